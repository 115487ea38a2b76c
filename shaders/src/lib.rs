//! # edgewise-shaders
//!
//! Will hold the ranking pipeline's WGSL compute shaders, kept as real `.wgsl`
//! files, and `GpuRanker`, a wgpu executor that runs them natively (Vulkan,
//! Metal, DX12) and on the web (WebGPU). naga validates every shader without a
//! GPU; conformance tests compare GPU results with `edgewise_core::rank`
//! within a documented tolerance.
//!
//! Not built yet (its own issue).
