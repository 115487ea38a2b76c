//! Declares the guest's linear-memory maximum in the module itself
//! (`wasm-ld --max-memory`), so every host that runs `edgewise_core.wasm`
//! (wasmtime, workerd, Deno, browsers) inherits the cap, not only the edge
//! with its own limiter: 64 MiB, 1024 pages.

/// The declared maximum, in bytes (a multiple of the 64 KiB page).
const MAX_MEMORY_BYTES: u64 = 64 << 20;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=--max-memory={MAX_MEMORY_BYTES}");
    }
}
