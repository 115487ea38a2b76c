//! Deterministic arithmetic shared by every stage.
//!
//! The core must give **bit-identical** results on x86-64, aarch64 and wasm32,
//! scalar or simd128 (DESIGN.md, "Determinism"). Three rules make that hold:
//!
//! 1. Embedding dot products are integer (`i8 × i8 → i32`): exact everywhere,
//!    whatever order the compiler sums them in.
//! 2. Every `f32` reduction goes through [`dot_f32`], which accumulates in
//!    [`LANES`] independent lanes (element `i` always lands in lane `i % LANES`)
//!    and then adds the lanes in one fixed tree. The compiler may vectorise the
//!    lanes, but it may not reassociate them, and Rust never contracts `a*b+c`
//!    into a fused multiply-add, so scalar and SIMD builds round identically.
//! 3. Transcendentals (`exp`, `sqrt`, `round`) come from the `libm` crate, a
//!    portable software implementation, never from the platform's libm.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm_simd;

/// Number of independent accumulators in [`dot_f32`]. Eight `f32` lanes are two
/// 128-bit vectors (SSE2, NEON or simd128), which keeps both pipelines busy.
pub const LANES: usize = 8;

/// Dot product of two `f32` slices in the fixed lane order described above.
///
/// Lanes 0–3 and 4–7 are two [`wide::f32x4`] accumulators (SSE2 on x86-64,
/// simd128 on wasm32, scalar elsewhere); each lane is an ordinary IEEE multiply
/// then add, so every backend rounds exactly like the scalar definition.
///
/// Only the common prefix is used when the lengths differ.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    use wide::f32x4;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lo = f32x4::ZERO;
    let mut hi = f32x4::ZERO;
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        lo += f32x4::from([x[0], x[1], x[2], x[3]]) * f32x4::from([y[0], y[1], y[2], y[3]]);
        hi += f32x4::from([x[4], x[5], x[6], x[7]]) * f32x4::from([y[4], y[5], y[6], y[7]]);
    }
    let (lo, hi) = (lo.to_array(), hi.to_array());
    let mut acc = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]];
    for (j, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[j] += x * y;
    }
    reduce_lanes(&acc)
}

/// Sum of the lanes in a fixed pairwise tree: `((0+4)+(2+6)) + ((1+5)+(3+7))`.
#[inline]
pub fn reduce_lanes(acc: &[f32; LANES]) -> f32 {
    let s0 = acc[0] + acc[4];
    let s1 = acc[1] + acc[5];
    let s2 = acc[2] + acc[6];
    let s3 = acc[3] + acc[7];
    (s0 + s2) + (s1 + s3)
}

/// Exact integer dot product of two int8 vectors (only the common prefix).
///
/// Sixteen bytes at a time: each 16-byte block is reinterpreted as eight `i16`
/// lanes; `(v << 8) >> 8` sign-extends the even bytes and `v >> 8` the odd ones,
/// and [`wide::i16x8::dot`] multiplies and pair-adds them into `i32` lanes
/// (`pmaddwd` on x86-64, `i32x4.dot_i16x8_s` on wasm simd128). Integer sums are
/// exact in any order. The largest possible magnitude is `len × 127 × 128`,
/// which fits in `i32` for any vector shorter than 132,000 elements; embeddings
/// are capped far below.
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        wasm_simd::dot_i8(a, b)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        dot_i8_portable(a, b)
    }
}

/// [`dot_i8`] of `a` with each of four rows: `[dot_i8(a, bs[0]), …]`.
///
/// With simd128 the four products share each load of `a` and end in one
/// transposing reduction instead of four horizontal ones; elsewhere it is
/// four calls. Integer sums are exact, so both are the same function.
#[inline]
pub fn dot_i8_x4(a: &[i8], bs: [&[i8]; 4]) -> [i32; 4] {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        wasm_simd::dot_i8_x4(a, bs)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        dot_i8_x4_portable(a, bs)
    }
}

/// The portable [`dot_i8_x4`]: [`dot_i8_portable`]'s kernel with the loads
/// and sign extensions of `a` shared by the four rows, and one transposing
/// reduction at the end.
#[inline]
pub fn dot_i8_x4_portable(a: &[i8], bs: [&[i8]; 4]) -> [i32; 4] {
    use wide::{i16x8, i32x4};
    let n = bs.iter().fold(a.len(), |n, b| n.min(b.len()));
    #[inline(always)]
    fn lanes(x: &[i8]) -> i16x8 {
        let mut w = [0i16; 8];
        for (j, p) in w.iter_mut().enumerate() {
            *p = i16::from_le_bytes([x[2 * j] as u8, x[2 * j + 1] as u8]);
        }
        i16x8::from(w)
    }
    let mut acc = [i32x4::ZERO; 4];
    let blocks = n / 16;
    for blk in 0..blocks {
        let at = blk * 16;
        let va = lanes(&a[at..at + 16]);
        let (ea, oa): (i16x8, i16x8) = ((va << 8u32) >> 8u32, va >> 8u32);
        for (acc, b) in acc.iter_mut().zip(&bs) {
            let vb = lanes(&b[at..at + 16]);
            let (eb, ob): (i16x8, i16x8) = ((vb << 8u32) >> 8u32, vb >> 8u32);
            *acc += ea.dot(eb) + oa.dot(ob);
        }
    }
    let [t0, t1, t2, t3] = i32x4::transpose(acc);
    let mut out = ((t0 + t1) + (t2 + t3)).to_array();
    let tail = blocks * 16;
    for (o, b) in out.iter_mut().zip(&bs) {
        for (x, y) in a[tail..n].iter().zip(&b[tail..n]) {
            *o += i32::from(*x) * i32::from(*y);
        }
    }
    out
}

/// The portable [`dot_i8`] (used on every target but wasm32 with simd128).
#[inline]
pub fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    use wide::{i16x8, i32x4};
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    // Little-endian lanes: byte 2j is the low half of i16 lane j on every target.
    #[inline(always)]
    fn lanes(x: &[i8]) -> i16x8 {
        let mut w = [0i16; 8];
        for (j, p) in w.iter_mut().enumerate() {
            *p = i16::from_le_bytes([x[2 * j] as u8, x[2 * j + 1] as u8]);
        }
        i16x8::from(w)
    }
    let mut acc = i32x4::ZERO;
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        let (vx, vy) = (lanes(x), lanes(y));
        let (ex, ey): (i16x8, i16x8) = ((vx << 8u32) >> 8u32, (vy << 8u32) >> 8u32);
        let (ox, oy): (i16x8, i16x8) = (vx >> 8u32, vy >> 8u32);
        acc += ex.dot(ey) + ox.dot(oy);
    }
    let mut sum = acc.reduce_add();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        sum += i32::from(*x) * i32::from(*y);
    }
    sum
}

/// Symmetric int8 quantisation of `v` into `out`, returning the scale.
///
/// `scale = max|v| / 127` and `out[i] = round(v[i] / scale)`, so `v[i] ≈ out[i] × scale`.
/// An all-zero (or empty) vector has scale 0. Non-finite inputs are treated as 0.
pub fn quantize_into(v: &[f32], out: &mut [i8]) -> f32 {
    let mut max = 0.0f32;
    for &x in v {
        if x.is_finite() && libm::fabsf(x) > max {
            max = libm::fabsf(x);
        }
    }
    if max == 0.0 {
        out.iter_mut().for_each(|o| *o = 0);
        return 0.0;
    }
    let scale = max / 127.0;
    for (o, &x) in out.iter_mut().zip(v) {
        let q = if x.is_finite() { libm::roundf(x / scale) } else { 0.0 };
        // `as` saturates, and |q| <= 127 by construction anyway.
        *o = q.clamp(-127.0, 127.0) as i8;
    }
    scale
}

/// Dequantise an int8 row: `out[i] = q[i] × scale`.
pub fn dequantize_into(q: &[i8], scale: f32, out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(q) {
        *o = f32::from(x) * scale;
    }
}

/// The square root, correctly rounded (IEEE 754): with simd128, lane 0 of
/// `f32x4.sqrt` (libm's software fallback there costs a call and dozens of
/// instructions; the scalar `f32.sqrt` intrinsic is not stable in Rust yet),
/// libm elsewhere (the hardware instruction on x86-64 and aarch64). Correct
/// rounding makes them the same function.
#[inline]
pub fn sqrt(x: f32) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        use core::arch::wasm32::{f32x4_extract_lane, f32x4_splat, f32x4_sqrt};
        f32x4_extract_lane::<0>(f32x4_sqrt(f32x4_splat(x)))
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        libm::sqrtf(x)
    }
}

/// The cosine of two int8 rows from their exact dot product `dot` and their
/// norms: 0 when either norm is zero (the per-row scales cancel).
#[inline]
pub fn cosine_of_dot(dot: i32, norm_a: f32, norm_b: f32) -> f32 {
    let den = norm_a * norm_b;
    if den == 0.0 { 0.0 } else { dot as f32 / den }
}

/// `e^x` for four values `x ≤ 0` at once, with the same bits on every
/// platform and within 2·10⁻⁷ of the true value (relative).
///
/// `x` is clamped to `[−87, 0]` (below −87 the result would leave the normal
/// range; a weight of e⁻⁸⁷ ≈ 10⁻³⁸ is zero to every use here). It is split
/// as `x = n·ln 2 + r` with `n` an integer and `|r| ≤ ln 2 / 2` (ln 2 in two
/// parts, as Cephes does, so `r` is exact), `e^r` is a degree-7 Taylor
/// polynomial (its error, `r⁸/8!` ≤ 6·10⁻⁹, is below an `f32` ulp) and `2^n`
/// is built in the exponent bits. Every step is an IEEE add, multiply or a
/// truncating conversion of an in-range value, lane by lane in `wide`'s
/// `f32x4` (never a fused multiply-add), so SSE2, simd128 and scalar code
/// agree bit for bit. Four lanes cost about what one `libm::expf` does.
#[inline]
pub fn exp_nonpositive_x4(x: [f32; 4]) -> [f32; 4] {
    use wide::{f32x4, i32x4};
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = f32x4::from(x).max(f32x4::splat(-87.0)).min(f32x4::ZERO);
    // For t ≤ 0, truncating t − 0.5 gives the integer nearest t (halves away from zero).
    let n = (x * f32x4::splat(core::f32::consts::LOG2_E) - f32x4::splat(0.5)).trunc_int();
    let nf = n.round_float();
    let r = (x - nf * f32x4::splat(LN2_HI)) - nf * f32x4::splat(LN2_LO);
    let mut p = f32x4::splat(1.0 / 5040.0);
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p * r + f32x4::splat(c);
    }
    let scale: f32x4 = bytemuck::cast((n + i32x4::splat(127)) << 23_i32);
    (p * scale).to_array()
}

/// [`exp_nonpositive_x4`] of one value (the same bits as its lane).
#[inline]
pub fn exp_nonpositive(x: f32) -> f32 {
    exp_nonpositive_x4([x, 0.0, 0.0, 0.0])[0]
}

/// The logistic function, `1 / (1 + e^-x)`, computed with `libm`.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + libm::expf(-x))
}

/// `score` with NaN mapped to −∞, so that sorting never puts a NaN first.
#[inline]
pub fn sortable(score: f32) -> f32 {
    if score.is_nan() { f32::NEG_INFINITY } else { score }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    #[test]
    fn exp_nonpositive_is_close_to_libm_and_lanes_are_independent() {
        let mut worst = 0.0f64;
        let mut x = 0.0f32;
        while x > -87.0 {
            let got = f64::from(exp_nonpositive(x));
            let want = f64::from(x).exp();
            worst = worst.max(((got - want) / want).abs());
            x -= 0.0137;
        }
        assert!(worst < 2e-7, "relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-1000.0) > 0.0 && exp_nonpositive(-1000.0) < 1e-37, "clamped at -87");
        let xs = [-0.1f32, -3.75, -40.0, 0.0];
        let v = exp_nonpositive_x4(xs);
        for (l, x) in xs.into_iter().enumerate() {
            assert_eq!(v[l].to_bits(), exp_nonpositive(x).to_bits());
        }
    }

    #[test]
    fn dot_f32_matches_lane_reference() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.37 - 2.0).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.5 - i as f32 * 0.11).collect();
        let mut lanes = [0.0f32; LANES];
        for i in 0..19 {
            lanes[i % LANES] += a[i] * b[i];
        }
        assert_eq!(dot_f32(&a, &b).to_bits(), reduce_lanes(&lanes).to_bits());
    }

    #[test]
    fn quantize_roundtrip_is_close() {
        let v = [0.5f32, -1.0, 0.25, 0.0, 0.999];
        let mut q = [0i8; 5];
        let s = quantize_into(&v, &mut q);
        assert_eq!(q[1], -127);
        let mut back = [0f32; 5];
        dequantize_into(&q, s, &mut back);
        for (x, y) in v.iter().zip(back) {
            assert!((x - y).abs() <= s / 2.0 + 1e-7, "{x} vs {y}");
        }
    }

    #[test]
    fn quantize_zero_and_nonfinite() {
        let mut q = [5i8; 3];
        assert_eq!(quantize_into(&[0.0, 0.0, 0.0], &mut q), 0.0);
        assert_eq!(q, [0, 0, 0]);
        let s = quantize_into(&[f32::NAN, 2.0, f32::INFINITY], &mut q);
        assert_eq!(s, 2.0 / 127.0);
        assert_eq!(q, [0, 127, 0]);
    }

    proptest! {
        #[test]
        fn dot_i8_x4_is_four_dot_products(
            a in proptest::collection::vec(any::<i8>(), 0..300),
            rows in proptest::collection::vec(proptest::collection::vec(any::<i8>(), 0..300), 4),
        ) {
            let bs: [&[i8]; 4] = core::array::from_fn(|l| &rows[l][..]);
            let n = bs.iter().fold(a.len(), |n, b| n.min(b.len()));
            let want = bs.map(|b| dot_i8(&a[..n], &b[..n]));
            prop_assert_eq!(dot_i8_x4(&a, bs), want);
            prop_assert_eq!(dot_i8_x4_portable(&a, bs), want);
        }

        #[test]
        fn dot_i8_equals_wide_reference(a in proptest::collection::vec(any::<i8>(), 0..600), b in proptest::collection::vec(any::<i8>(), 0..600)) {
            let n = a.len().min(b.len());
            let want: i64 = (0..n).map(|i| i64::from(a[i]) * i64::from(b[i])).sum();
            prop_assert_eq!(i64::from(dot_i8(&a, &b)), want);
        }

        #[test]
        fn dot_f32_is_close_to_f64(a in proptest::collection::vec(-10.0f32..10.0, 0..300)) {
            let got = f64::from(dot_f32(&a, &a));
            let want: f64 = a.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
            prop_assert!((got - want).abs() <= 1e-4 * want.max(1.0));
        }
    }
}
