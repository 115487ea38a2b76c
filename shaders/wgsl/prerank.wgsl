// The pre-rank scan: one invocation per bundle row.
//
// Reads the bundle's columns where `edgewise_core::bundle` lays them out (the
// whole bundle is bound as `array<u32>`; every column starts on an 8-byte
// boundary, so f32 and u32 columns are word-aligned, and byte columns are read
// by word and shift). Writes, per row:
// - `dots[i]`: the int8 dot product of the quantised query and the row's
//   embedding, exact (i8 × i8 summed in i32 is exact on every device, and
//   |sum| ≤ 4096 · 128 · 128 fits);
// - `pre[i]`: the pre-rank score, in the core's order of operations. WGSL
//   does not promise the CPU's f32 bits, so the CPU never trusts `pre`: it
//   keeps every row within a proven margin of the cut, and recomputes exactly;
// - `mag[i]`: the sum of the magnitudes of the score's terms, from which the
//   CPU bounds the difference between `pre[i]` and its own score
//   (`edgewise_shaders::select`).
//
// Fits WebGPU's default limits: 7 bindings, no workgroup memory, 64
// invocations per workgroup.

struct Params {
    // Rows, embedding dimension, features per row, source slots.
    n: u32,
    dim: u32,
    n_features: u32,
    n_sources: u32,
    // Byte offsets of the columns in the bundle.
    scales_at: u32,
    retrieval_at: u32,
    features_at: u32,
    source_mask_at: u32,
    embeddings_at: u32,
    // The query's quantisation scale and the pre-ranker's scalar weights.
    query_scale: f32,
    bias: f32,
    w_dot: f32,
    w_retrieval: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> bundle: array<u32>;
// The quantised query, one i8 value per i32.
@group(0) @binding(2) var<storage, read> query: array<i32>;
// The feature weights, then the source weights.
@group(0) @binding(3) var<storage, read> weights: array<f32>;
@group(0) @binding(4) var<storage, read_write> dots: array<i32>;
@group(0) @binding(5) var<storage, read_write> pre: array<f32>;
@group(0) @binding(6) var<storage, read_write> mag: array<f32>;

// The signed byte at `at` (sign-extended by extractBits on an i32).
fn byte_i8(at: u32) -> i32 {
    return extractBits(bitcast<i32>(bundle[at >> 2u]), (at & 3u) * 8u, 8u);
}

// The unsigned byte at `at`.
fn byte_u8(at: u32) -> u32 {
    return extractBits(bundle[at >> 2u], (at & 3u) * 8u, 8u);
}

// The f32 at byte `at` (4-aligned).
fn word_f32(at: u32) -> f32 {
    return bitcast<f32>(bundle[at >> 2u]);
}

@compute @workgroup_size(64)
fn prerank(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= params.n) {
        return;
    }
    let row = params.embeddings_at + i * params.dim;
    var dot: i32 = 0;
    for (var j: u32 = 0u; j < params.dim; j = j + 1u) {
        dot = dot + query[j] * byte_i8(row + j);
    }
    dots[i] = dot;

    let scale = word_f32(params.scales_at + 4u * i);
    let dot_term = params.w_dot * (f32(dot) * (params.query_scale * scale));
    let retrieval_term = params.w_retrieval * word_f32(params.retrieval_at + 4u * i);
    var score = params.bias + dot_term;
    score = score + retrieval_term;
    var m = abs(params.bias) + abs(dot_term) + abs(retrieval_term);
    let features = params.features_at + 4u * i * params.n_features;
    for (var f: u32 = 0u; f < params.n_features; f = f + 1u) {
        let t = weights[f] * word_f32(features + 4u * f);
        score = score + t;
        m = m + abs(t);
    }
    let mask = byte_u8(params.source_mask_at + i);
    for (var s: u32 = 0u; s < params.n_sources; s = s + 1u) {
        if ((mask >> s) & 1u) == 1u {
            score = score + weights[params.n_features + s];
            m = m + abs(weights[params.n_features + s]);
        }
    }
    pre[i] = score;
    mag[i] = m;
}
