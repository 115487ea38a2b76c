//! wasm32 simd128 kernels, used when the crate is compiled with
//! `target-feature=+simd128` (the guest module is).
//!
//! Only integer kernels live here: their results are exact, so they are equal
//! to the portable versions by construction, and the guest-vs-native
//! conformance test checks it anyway. The portable code would also compile to
//! simd128, but LLVM rewrites its widening into byte shuffles that wasm engines
//! lower poorly; here the widening is the native `extend_{low,high}_i8x16_s`.
#![allow(unsafe_code)]

use core::arch::wasm32::{
    i16x8_extend_high_i8x16, i16x8_extend_low_i8x16, i32x4_add, i32x4_dot_i16x8, i32x4_extract_lane, i32x4_shuffle,
    i32x4_splat, v128, v128_load,
};

/// Exact `i8 × i8 → i32` dot product of the common prefix of `a` and `b`.
#[inline]
pub(super) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let mut acc = i32x4_splat(0);
    let mut i = 0;
    // 64 bytes per iteration in two independent chains: a sandboxed engine
    // checks its deadline at every loop back-edge, so fewer iterations are
    // cheaper there (and the embeddings' usual widths are multiples of 64).
    let mut acc2 = i32x4_splat(0);
    while i + 64 <= n {
        // SAFETY: `i + 64 <= n <= a.len(), b.len()`, so all four 16-byte reads
        // of each slice are in bounds; `v128_load` has no alignment requirement.
        let [x0, x1, x2, x3, y0, y1, y2, y3] = unsafe {
            let (pa, pb) = (a.as_ptr().add(i).cast::<v128>(), b.as_ptr().add(i).cast::<v128>());
            [
                v128_load(pa),
                v128_load(pa.add(1)),
                v128_load(pa.add(2)),
                v128_load(pa.add(3)),
                v128_load(pb),
                v128_load(pb.add(1)),
                v128_load(pb.add(2)),
                v128_load(pb.add(3)),
            ]
        };
        acc = i32x4_add(acc, widened_dot(x0, y0));
        acc2 = i32x4_add(acc2, widened_dot(x1, y1));
        acc = i32x4_add(acc, widened_dot(x2, y2));
        acc2 = i32x4_add(acc2, widened_dot(x3, y3));
        i += 64;
    }
    acc = i32x4_add(acc, acc2);
    while i + 16 <= n {
        // SAFETY: `i + 16 <= n <= a.len(), b.len()`, so both 16-byte reads are in
        // bounds; `v128_load` has no alignment requirement.
        let (x, y) =
            unsafe { (v128_load(a.as_ptr().add(i).cast::<v128>()), v128_load(b.as_ptr().add(i).cast::<v128>())) };
        acc = i32x4_add(acc, widened_dot(x, y));
        i += 16;
    }
    let mut sum = i32x4_extract_lane::<0>(acc)
        + i32x4_extract_lane::<1>(acc)
        + i32x4_extract_lane::<2>(acc)
        + i32x4_extract_lane::<3>(acc);
    for (x, y) in a[i..n].iter().zip(&b[i..n]) {
        sum += i32::from(*x) * i32::from(*y);
    }
    sum
}

/// Exact dot products of `a` with each of `bs` (common prefixes), as
/// `super::dot_i8_x4` documents: one pass over `a` feeding four
/// accumulators, then a 4×4 transposing reduction.
#[inline]
pub(super) fn dot_i8_x4(a: &[i8], bs: [&[i8]; 4]) -> [i32; 4] {
    let n = bs.iter().fold(a.len(), |n, b| n.min(b.len()));
    let mut acc = [i32x4_splat(0); 4];
    // The first four 16-byte blocks (all of a 64-wide embedding) in
    // straight-line code: a constant trip count leaves no loop in the module.
    // A sandboxed engine puts an epoch check on every loop back-edge, and
    // Cranelift keeps vector accumulators in stack slots across such a loop
    // (the check's slow path is a call, which clobbers every vector
    // register), so a loop here costs a spill and a reload per block.
    let head = (n / 16).min(4);
    let mut block = |i: usize| {
        // SAFETY: callers pass `i` with `i + 16 <= n`, and `n` is at most the
        // length of `a` and of every row, so each 16-byte read is in bounds;
        // `v128_load` has no alignment requirement.
        let x = unsafe { v128_load(a.as_ptr().add(i).cast::<v128>()) };
        for (acc, b) in acc.iter_mut().zip(&bs) {
            // SAFETY: as above.
            let y = unsafe { v128_load(b.as_ptr().add(i).cast::<v128>()) };
            *acc = i32x4_add(*acc, widened_dot(x, y));
        }
    };
    // Written out: LLVM would fold `for c in 0..4 { if c < head { … } }` back into a loop.
    if head >= 1 {
        block(0);
    }
    if head >= 2 {
        block(16);
    }
    if head >= 3 {
        block(32);
    }
    if head >= 4 {
        block(48);
    }
    let mut i = 16 * head;
    while i + 16 <= n {
        block(i);
        i += 16;
    }
    // Lane sums of the four accumulators, transposed into one vector.
    let [a0, a1, a2, a3] = acc;
    let s01 = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(a0, a1), i32x4_shuffle::<2, 6, 3, 7>(a0, a1));
    let s23 = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(a2, a3), i32x4_shuffle::<2, 6, 3, 7>(a2, a3));
    let sum = i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(s01, s23), i32x4_shuffle::<2, 3, 6, 7>(s01, s23));
    let mut out = [
        i32x4_extract_lane::<0>(sum),
        i32x4_extract_lane::<1>(sum),
        i32x4_extract_lane::<2>(sum),
        i32x4_extract_lane::<3>(sum),
    ];
    for (o, b) in out.iter_mut().zip(&bs) {
        for (x, y) in a[i..n].iter().zip(&b[i..n]) {
            *o += i32::from(*x) * i32::from(*y);
        }
    }
    out
}

/// The dot product of 16 bytes as four `i32` lanes: both halves widened to
/// `i16` and multiplied pairwise (`i32x4.dot_i16x8_s`), then added.
#[inline(always)]
fn widened_dot(x: v128, y: v128) -> v128 {
    i32x4_add(
        i32x4_dot_i16x8(i16x8_extend_low_i8x16(x), i16x8_extend_low_i8x16(y)),
        i32x4_dot_i16x8(i16x8_extend_high_i8x16(x), i16x8_extend_high_i8x16(y)),
    )
}
