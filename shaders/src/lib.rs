//! # edgewise-shaders
//!
//! The ranking pipeline on a GPU: WGSL compute shaders, kept as real `.wgsl`
//! files in `shaders/wgsl/` and embedded with `include_str!` so the same text
//! serves native wgpu and the browser's WebGPU, and [`GpuRanker`], which runs
//! them through wgpu and lets the CPU core finish.
//!
//! | file | what |
//! |---|---|
//! | [`DOTS`] (`dots.wgsl`) | the pre-rank scan: the exact int8 dot product of the query with every row of a chunk of the embedding column |
//! | [`DOT4_UNPACKED`] (`dot4_unpacked.wgsl`) | `dot4` by unpacking four lanes with `extractBits`: runs everywhere |
//! | [`DOT4_PACKED`] (`dot4_packed.wgsl`) | `dot4` by `dot4I8Packed`, where the `packed_4x8_integer_dot_product` language feature is present |
//!
//! A module is a `dot4` file followed by [`DOTS`] ([`dots_shader`]); both
//! `dot4`s are exact, so the choice never changes a result.
//!
//! # The contract
//! The GPU path's final ranking is byte-identical (the `EWRS` encoding) to
//! [`edgewise_core::rank::Ranker::rank`] on the same bundle, model and
//! context. The GPU computes only integers (exact on every device); the core
//! computes every float, in its own order. [`gpu`] explains the split, and
//! [`choose`] the `auto | gpu | cpu` selection with its CPU fallback.

pub mod choose;
pub mod gpu;

pub use choose::{AnyRanker, Choice, Path, Prepared};
pub use gpu::{AdapterSummary, Created, GpuBundle, GpuError, GpuOptions, GpuRanker, PackedDot};
pub use wgpu;

/// The pre-rank scan (`wgsl/dots.wgsl`), entry point `dots_main`; needs a `dot4` in front.
pub const DOTS: &str = include_str!("../wgsl/dots.wgsl");
/// `dot4` by unpacking lanes (`wgsl/dot4_unpacked.wgsl`).
pub const DOT4_UNPACKED: &str = include_str!("../wgsl/dot4_unpacked.wgsl");
/// `dot4` by `dot4I8Packed` (`wgsl/dot4_packed.wgsl`), with its `requires` line.
pub const DOT4_PACKED: &str = include_str!("../wgsl/dot4_packed.wgsl");

/// Every shader file, by name, so tests can check that none is left out.
pub const SHADERS: [(&str, &str); 3] =
    [("dots.wgsl", DOTS), ("dot4_unpacked.wgsl", DOT4_UNPACKED), ("dot4_packed.wgsl", DOT4_PACKED)];

/// The scan module: the chosen `dot4`, then [`DOTS`].
pub fn dots_shader(packed: bool) -> String {
    let dot4 = if packed { DOT4_PACKED } else { DOT4_UNPACKED };
    let mut s = String::with_capacity(dot4.len() + DOTS.len());
    s.push_str(dot4);
    s.push_str(DOTS);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// naga (wgpu's shader translator) parses and validates both modules, with
    /// every capability enabled, and every `.wgsl` file is in [`SHADERS`].
    #[test]
    fn naga_validates_every_shader() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("wgsl");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("shaders/wgsl exists")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.ends_with(".wgsl"))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = SHADERS.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "every .wgsl file is embedded and validated");
        for packed in [false, true] {
            let src = dots_shader(packed);
            let name = if packed { "dot4_packed + dots" } else { "dot4_unpacked + dots" };
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{name} does not parse:\n{}", e.emit_to_string(&src)));
            let mut v =
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
            if let Err(e) = v.validate(&module) {
                panic!("{name} does not validate: {e:?}");
            }
            assert!(
                module.entry_points.iter().any(|ep| ep.name == "dots_main" && ep.stage == naga::ShaderStage::Compute),
                "{name}: the compute entry point"
            );
            let ep = module.entry_points.iter().find(|ep| ep.name == "dots_main").expect("entry point");
            assert!(ep.workgroup_size.iter().product::<u32>() <= 256, "{name}: within 256 invocations");
            println!("{name}: parses and validates ({} functions)", module.functions.len());
        }
    }
}
