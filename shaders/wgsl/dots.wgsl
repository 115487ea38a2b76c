// The pre-rank scan: the exact int8 dot product of the quantised query with
// every row of a chunk of the bundle's embedding column.
//
// This file is not a module on its own: a `dot4` definition goes in front of
// it, `dot4_unpacked.wgsl` everywhere or `dot4_packed.wgsl` where the
// `packed_4x8_integer_dot_product` WGSL language feature is present. Both are
// exact, so the choice never changes a result.
//
// Rows are `words` u32 long: four int8 lanes per word, little-endian, as the
// bundle lays them out (a row whose dimension is not a multiple of 4 is
// padded with zero lanes on upload, and so is the query). The sum is exact:
// |dot| <= 4096 * 128 * 128 < 2^31 for the largest dimension a bundle allows.
//
// One invocation per row, 64 per workgroup, no workgroup memory, 4 bindings:
// within WebGPU's default limits. A chunk has at most 65535 * 64 rows and at
// most 128 MiB, so the dispatch and the binding fit the defaults too.

struct Params {
    // Rows in this chunk.
    rows: u32,
    // u32 words per row (the dimension divided by 4, rounded up).
    words: u32,
    // Index, in `dots`, of this chunk's first row.
    first: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> rows: array<u32>;
@group(0) @binding(2) var<storage, read> query: array<u32>;
@group(0) @binding(3) var<storage, read_write> dots: array<i32>;

@compute @workgroup_size(64)
fn dots_main(@builtin(global_invocation_id) id: vec3<u32>) {
    let r = id.x;
    if (r >= params.rows) {
        return;
    }
    let at = r * params.words;
    var acc: i32 = 0;
    for (var w: u32 = 0u; w < params.words; w = w + 1u) {
        acc = acc + dot4(query[w], rows[at + w]);
    }
    dots[params.first + r] = acc;
}
