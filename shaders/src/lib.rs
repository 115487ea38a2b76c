//! # edgewise-shaders
//!
//! The ranking pipeline's WGSL compute shaders, kept as real `.wgsl` files in
//! `shaders/wgsl/` and embedded with `include_str!`, so the same text serves
//! native wgpu and the browser's WebGPU.
//!
//! | shader | what |
//! |---|---|
//! | [`PRERANK`] | the pre-rank scan: per bundle row, the exact int8 dot product with the quantised query, the pre-rank score and the sum of its terms' magnitudes |
//!
//! [`select`] turns the scan's f32 scores into a superset of the rows the CPU
//! core's pre-ranker keeps, with the error bound written down and proven.
//!
//! The contract the GPU path is built to (its own issue, in progress): the
//! final ranking is byte-identical to `edgewise_core`'s. WGSL does not promise
//! the CPU's f32 bits, so the GPU's f32 scores only choose a superset of the
//! rows the pre-ranker keeps, with a proven margin; integer dot products are
//! exact on every device, and the CPU core finishes on the superset. What is
//! here today: the scan kernel, validated by naga in a plain unit test (no
//! device), and the superset selection with its property tests.
//! `GpuRanker` (wgpu) and the lavapipe conformance tests are not built yet;
//! the kernel has not run on a device yet.

pub mod select;

/// The pre-rank scan (`wgsl/prerank.wgsl`), entry point `prerank`.
pub const PRERANK: &str = include_str!("../wgsl/prerank.wgsl");

/// Every shader, by file name, so tests can check that none is left out.
pub const SHADERS: [(&str, &str); 1] = [("prerank.wgsl", PRERANK)];

#[cfg(test)]
mod tests {
    use super::*;

    /// naga (wgpu's shader translator) parses and validates every shader, with
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
        for (name, src) in SHADERS {
            let module = naga::front::wgsl::parse_str(src)
                .unwrap_or_else(|e| panic!("{name} does not parse:\n{}", e.emit_to_string(src)));
            let mut v =
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
            if let Err(e) = v.validate(&module) {
                panic!("{name} does not validate: {e:?}");
            }
            assert!(
                module.entry_points.iter().any(|ep| ep.name == "prerank" && ep.stage == naga::ShaderStage::Compute),
                "{name}: the compute entry point"
            );
            println!("{name}: parses and validates ({} functions)", module.functions.len());
        }
    }
}
