//! Compiles the C++ shim over the vendored hnswlib headers.
//!
//! The shim is always built at `-O3`, whatever the Cargo profile: debug test
//! runs build graphs of 100k vectors, and the graph code is the hot path. No
//! `-march` flag: the distance kernels are Rust functions picked at run time
//! by CPU feature (see `src/kernels.rs`), so the library runs on any x86-64
//! (and any other target the `cc` crate can build C++ for).

fn main() {
    println!("cargo:rerun-if-changed=src/shim.cpp");
    println!("cargo:rerun-if-changed=vendor/hnswlib");
    cc::Build::new()
        .cpp(true)
        .file("src/shim.cpp")
        .include("vendor")
        .std("c++17")
        .opt_level(3)
        .define("NDEBUG", None)
        .warnings(false)
        .compile("edgewise_hnswlib_shim");
}
