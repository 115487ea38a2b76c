//! Inner-product distance kernels for the graph, picked once per index by CPU
//! feature.
//!
//! hnswlib chooses its SIMD distance at *compile* time (`-march=native`), which
//! a distributed binary cannot do. So the shim is built for the baseline CPU
//! and the distance comes from here, in three builds: AVX-512F (two 16-lane
//! sums, the remainder through one masked load), AVX2 + FMA (two 8-lane sums,
//! a scalar remainder), and a portable loop. The fastest one the running CPU
//! supports is handed to hnswlib as a function pointer; each distance function
//! carries its own `target_feature`, so the dot product inlines into it.
//!
//! The distance is `1 − a·b`, hnswlib's inner-product space: smaller is
//! closer, and for unit vectors it is the cosine distance. The builds sum in
//! different orders, so they agree to rounding, not bit for bit.

use std::ffi::c_void;

/// The signature hnswlib calls: two vectors and a pointer to the dimension.
pub(crate) type DistFn = unsafe extern "C" fn(*const c_void, *const c_void, *const c_void) -> f32;

/// Portable `a·b` over `n` floats, in 8 lane sums (vectorised by the compiler
/// for the target's baseline SIMD).
///
/// # Safety
/// `a` and `b` point to `n` floats each.
#[inline(always)]
unsafe fn dot_portable(a: *const f32, b: *const f32, n: usize) -> f32 {
    // SAFETY: guaranteed by the caller.
    let (a, b) = unsafe { (std::slice::from_raw_parts(a, n), std::slice::from_raw_parts(b, n)) };
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    let mut acc = [0.0f32; 8];
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX-512F is available; `a` and `b` point to `n` floats each.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn dot_avx512(a: *const f32, b: *const f32, n: usize) -> f32 {
        // SAFETY: every load stays below `n` (the tail's masked-off lanes are
        // not read); the caller guarantees the pointers and the feature.
        unsafe {
            let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            let mut i = 0;
            while i + 32 <= n {
                s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a.add(i)), _mm512_loadu_ps(b.add(i)), s0);
                s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a.add(i + 16)), _mm512_loadu_ps(b.add(i + 16)), s1);
                i += 32;
            }
            if i + 16 <= n {
                s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a.add(i)), _mm512_loadu_ps(b.add(i)), s0);
                i += 16;
            }
            if i < n {
                let m = ((1u32 << (n - i)) - 1) as __mmask16;
                s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a.add(i)), _mm512_maskz_loadu_ps(m, b.add(i)), s1);
            }
            _mm512_reduce_add_ps(_mm512_add_ps(s0, s1))
        }
    }

    /// # Safety
    /// AVX2 and FMA are available; `a` and `b` point to `n` floats each.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn dot_avx2(a: *const f32, b: *const f32, n: usize) -> f32 {
        // SAFETY: every load stays below `n`; the caller guarantees the
        // pointers and the features.
        unsafe {
            let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            while i + 16 <= n {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.add(i)), _mm256_loadu_ps(b.add(i)), s0);
                s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a.add(i + 8)), _mm256_loadu_ps(b.add(i + 8)), s1);
                i += 16;
            }
            if i + 8 <= n {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.add(i)), _mm256_loadu_ps(b.add(i)), s0);
                i += 8;
            }
            let s = _mm256_add_ps(s0, s1);
            let q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
            let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
            let q = _mm_add_ss(q, _mm_movehdup_ps(q));
            let mut sum = _mm_cvtss_f32(q);
            while i < n {
                sum = (*a.add(i)).mul_add(*b.add(i), sum);
                i += 1;
            }
            sum
        }
    }

    /// # Safety
    /// As [`dot_avx512`], with `dim` pointing to the dimension.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe extern "C" fn distance_avx512(
        a: *const std::ffi::c_void,
        b: *const std::ffi::c_void,
        dim: *const std::ffi::c_void,
    ) -> f32 {
        // SAFETY: hnswlib passes two vectors of `*dim` floats and the space's
        // dimension; the kernel is handed out only where AVX-512F was detected.
        unsafe { 1.0 - dot_avx512(a.cast(), b.cast(), *dim.cast::<usize>()) }
    }

    /// # Safety
    /// As [`dot_avx2`], with `dim` pointing to the dimension.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe extern "C" fn distance_avx2(
        a: *const std::ffi::c_void,
        b: *const std::ffi::c_void,
        dim: *const std::ffi::c_void,
    ) -> f32 {
        // SAFETY: as for `distance_avx512`, with AVX2 and FMA detected.
        unsafe { 1.0 - dot_avx2(a.cast(), b.cast(), *dim.cast::<usize>()) }
    }
}

/// # Safety
/// hnswlib's arguments: two vectors of `*dim` floats and the dimension.
unsafe extern "C" fn distance_portable(a: *const c_void, b: *const c_void, dim: *const c_void) -> f32 {
    // SAFETY: guaranteed by the caller.
    unsafe { 1.0 - dot_portable(a.cast(), b.cast(), *dim.cast::<usize>()) }
}

/// Which build a [`Kernel`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

/// A distance kernel and its name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kernel {
    pub(crate) name: &'static str,
    pub(crate) distance: DistFn,
    isa: Isa,
}

impl Kernel {
    /// `a·b` over the shorter length, with this kernel (for tests and for
    /// callers that score outside the graph).
    pub(crate) fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (a, b) = (a.as_ptr(), b.as_ptr());
        // SAFETY: both slices hold at least `n` floats, and a kernel is only
        // built (by `best`) for features the CPU has.
        unsafe {
            match self.isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => x86::dot_avx512(a, b, n),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => x86::dot_avx2(a, b, n),
                Isa::Portable => dot_portable(a, b, n),
            }
        }
    }
}

/// The kernel for any CPU.
const PORTABLE: Kernel = Kernel { name: "portable", distance: distance_portable, isa: Isa::Portable };

/// Every kernel this CPU runs, slowest first (the property test covers each).
fn supported() -> Vec<Kernel> {
    let mut out = vec![PORTABLE];
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            out.push(Kernel { name: "avx2+fma", distance: x86::distance_avx2, isa: Isa::Avx2 });
        }
        if is_x86_feature_detected!("avx512f") {
            out.push(Kernel { name: "avx512f", distance: x86::distance_avx512, isa: Isa::Avx512 });
        }
    }
    out
}

/// The fastest kernel this CPU runs.
pub(crate) fn best() -> Kernel {
    supported().pop().unwrap_or(PORTABLE)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn naive(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
    }

    proptest! {
        /// Every kernel agrees with a plain f64 dot product, at every length
        /// (full lane blocks, remainders, and shorter than one block).
        #[test]
        fn kernels_match_a_naive_dot_product(
            pairs in prop::collection::vec((-4.0f32..4.0, -4.0f32..4.0), 0..300),
        ) {
            let (a, b): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            let want = naive(&a, &b);
            let scale: f64 = a.iter().zip(&b).map(|(x, y)| f64::from((x * y).abs())).sum::<f64>() + 1.0;
            for k in supported() {
                let got = f64::from(k.dot(&a, &b));
                prop_assert!((got - want).abs() <= 1e-5 * scale, "{}: {got} against {want}", k.name);
                let n = a.len();
                // SAFETY: both vectors hold `n` floats and `n` is a usize.
                let d = unsafe {
                    (k.distance)(a.as_ptr().cast(), b.as_ptr().cast(), (&raw const n).cast())
                };
                prop_assert!((f64::from(d) - (1.0 - want)).abs() <= 1e-5 * scale, "{} distance", k.name);
            }
        }
    }

    /// The property above covers every kernel the CPU runs, the chosen one among them.
    #[test]
    fn the_chosen_kernel_is_among_those_tested() {
        let names: Vec<&str> = supported().iter().map(|k| k.name).collect();
        println!("kernels tested on this CPU: {names:?}; chosen: {}", best().name);
        assert!(names.contains(&best().name));
    }
}
