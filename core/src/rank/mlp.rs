//! The main ranker's MLP: the reference [`mlp_forward`] for one input
//! vector, and [`mlp_forward_batch`], which evaluates [`MLP_BATCH`]
//! candidates at once with kernels that round exactly like the reference.

use alloc::vec::Vec;

use crate::math::{LANES, dot_f32, reduce_lanes};
use crate::model::Model;

/// Runs the MLP on one input vector, using `a`/`b` as activation buffers; returns the logit.
///
/// This is the reference definition: every output is `dot_f32(row, x) + bias`
/// ([`crate::math::dot_f32`]), followed by ReLU on every layer but the last.
/// The ranker evaluates [`MLP_BATCH`] candidates at a time with
/// [`mlp_forward_batch`], which gives bit-identical results.
pub fn mlp_forward(model: &Model, input: &[f32], a: &mut Vec<f32>, b: &mut Vec<f32>) -> f32 {
    a.clear();
    a.extend_from_slice(input);
    let last = model.mlp.len().saturating_sub(1);
    for (k, layer) in model.mlp.iter().enumerate() {
        b.clear();
        for (o, row) in layer.weights.chunks_exact(layer.inputs).enumerate() {
            let mut y = dot_f32(row, a) + layer.bias[o];
            if k != last && y < 0.0 {
                y = 0.0;
            }
            b.push(y);
        }
        core::mem::swap(a, b);
    }
    a.first().copied().unwrap_or(f32::NAN)
}

/// Candidates the MLP evaluates together.
///
/// Either kernel below gets `2 × MLP_BATCH` or more independent accumulator
/// chains from the batch, where a single fixed-lane dot product has only two;
/// that keeps the MLP throughput-bound rather than latency-bound, natively and
/// in wasm.
pub const MLP_BATCH: usize = 4;

/// Which kernel a layer of `inputs` inputs runs, given the layout the
/// activations are in: [`layer_interleaved`] below 16 inputs, [`layer_rows`]
/// above 32, and between the two whichever needs no re-layout.
///
/// The row kernel loads eight weights in two vectors but ends every output
/// with a horizontal reduction per candidate; the interleaved one broadcasts
/// each weight but reduces four candidates in one vector. Instruction counts
/// (callgrind, native and in the guest) on the feed's model (12 → 32 → 1) and
/// on the benchmark's (80 or 272 → 64 → 32 → 1) put the crossover there:
/// interleaving every layer cut the feed's MLP by more than half but cost
/// the guest a fifth more at d = 256.
fn layout_for(inputs: usize, current: Layout) -> Layout {
    match inputs {
        0..16 => Layout::Interleaved,
        16..=32 => current,
        _ => Layout::Rows,
    }
}

/// How a batch's activations are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Candidate after candidate: `x[b * width + i]`.
    Rows,
    /// Input after input, the batch's candidates side by side: `x[i * MLP_BATCH + b]`.
    Interleaved,
}

/// One layer for [`MLP_BATCH`] candidates in [`Layout::Rows`]: `x` holds
/// `MLP_BATCH` rows of `layer.inputs` values, `y` receives `MLP_BATCH` rows of
/// `layer.outputs`. Lane for lane the same operations as
/// [`crate::math::dot_f32`].
// Out of line: inlined into `mlp_forward_batch`, its accumulators are
// spilled by Cranelift (the guest) for want of registers.
#[inline(never)]
fn layer_rows(layer: &crate::model::Layer, x: &[f32], y: &mut Vec<f32>, relu: bool) {
    use wide::f32x4;
    const B: usize = MLP_BATCH;
    let (ni, no) = (layer.inputs, layer.outputs);
    y.clear();
    y.resize(B * no, 0.0);
    let xs: [&[f32]; B] = core::array::from_fn(|b| &x[b * ni..(b + 1) * ni]);
    let v = |s: &[f32]| f32x4::from([s[0], s[1], s[2], s[3]]);
    let tail = ni - ni % LANES;
    for (o, row) in layer.weights.chunks_exact(ni).enumerate() {
        let mut lo = [f32x4::ZERO; B];
        let mut hi = [f32x4::ZERO; B];
        for (c, w) in row.chunks_exact(LANES).enumerate() {
            let (wl, wh) = (v(&w[..4]), v(&w[4..]));
            let at = c * LANES;
            for b in 0..B {
                let xb = &xs[b][at..at + LANES];
                lo[b] += wl * v(&xb[..4]);
                hi[b] += wh * v(&xb[4..]);
            }
        }
        for (bi, xb) in xs.iter().enumerate() {
            let (l, h) = (lo[bi].to_array(), hi[bi].to_array());
            let mut acc = [l[0], l[1], l[2], l[3], h[0], h[1], h[2], h[3]];
            for (j, (w, x)) in row[tail..].iter().zip(&xb[tail..]).enumerate() {
                acc[j] += w * x;
            }
            let mut out = reduce_lanes(&acc) + layer.bias[o];
            if relu && out < 0.0 {
                out = 0.0;
            }
            y[bi * no + o] = out;
        }
    }
}

/// One layer for [`MLP_BATCH`] candidates in [`Layout::Interleaved`]: `x`
/// holds `layer.inputs × MLP_BATCH` values, `y` receives
/// `layer.outputs × MLP_BATCH`.
///
/// Per candidate this is exactly [`crate::math::dot_f32`] plus the bias: input
/// `i` is multiplied into accumulator `i % LANES` (chunks of [`LANES`], then
/// the tail into accumulators `0..`), in order, and the accumulators are summed
/// in [`reduce_lanes`]'s tree. Only the vector axis differs: a vector holds
/// one accumulator of four candidates rather than four accumulators of one, so
/// every rounding step is the same.
// Out of line, as `layer_rows`: Cranelift keeps the eight accumulators in
// registers only when the kernel is compiled on its own.
#[inline(never)]
fn layer_interleaved(layer: &crate::model::Layer, x: &[f32], y: &mut Vec<f32>, relu: bool) {
    use wide::{CmpLt, f32x4};
    const B: usize = MLP_BATCH;
    const _: () = assert!(MLP_BATCH == 4, "one candidate per lane of an f32x4");
    let ni = layer.inputs;
    y.clear();
    y.resize(layer.outputs * B, 0.0);
    let tail = ni - ni % LANES;
    // One `[f32; 4]` per input: that input of the four candidates.
    let (x_main, x_tail) = x[..ni * B].as_chunks::<B>().0.split_at(tail);
    let outputs = y.as_chunks_mut::<B>().0;
    for ((row, &bias), y) in layer.weights.chunks_exact(ni).zip(&layer.bias).zip(outputs) {
        let mut acc = [f32x4::ZERO; LANES];
        for (w, xc) in row.chunks_exact(LANES).zip(x_main.chunks_exact(LANES)) {
            for ((a, &wi), &xi) in acc.iter_mut().zip(w).zip(xc) {
                *a += f32x4::splat(wi) * f32x4::from(xi);
            }
        }
        for ((a, &wi), &xi) in acc.iter_mut().zip(&row[tail..]).zip(x_tail) {
            *a += f32x4::splat(wi) * f32x4::from(xi);
        }
        let mut out = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
        out += f32x4::splat(bias);
        if relu {
            // `y < 0 → 0` lane by lane: NaN and -0.0 pass through, as in the reference.
            out = out.cmp_lt(f32x4::ZERO).blend(f32x4::ZERO, out);
        }
        *y = out.to_array();
    }
}

/// Rewrites `x` (a batch of `width`-wide activations in layout `from`) into
/// the other layout, using `scratch`.
fn relayout(x: &mut Vec<f32>, scratch: &mut Vec<f32>, width: usize, from: Layout) {
    scratch.clear();
    scratch.resize(width * MLP_BATCH, 0.0);
    match from {
        Layout::Rows => interleave(x, width, scratch),
        Layout::Interleaved => {
            for (i, v) in x[..width * MLP_BATCH].as_chunks::<MLP_BATCH>().0.iter().enumerate() {
                for (b, &v) in v.iter().enumerate() {
                    scratch[b * width + i] = v;
                }
            }
        }
    }
    core::mem::swap(x, scratch);
}

/// Writes `rows` ([`MLP_BATCH`] rows of `width` values, [`Layout::Rows`]) into
/// `out` in [`Layout::Interleaved`]: one `[f32; MLP_BATCH]` per input.
fn interleave(rows: &[f32], width: usize, out: &mut [f32]) {
    const _: () = assert!(MLP_BATCH == 4, "four rows to interleave");
    let [r0, r1, r2, r3]: [&[f32]; MLP_BATCH] = core::array::from_fn(|b| &rows[b * width..(b + 1) * width]);
    let it = out.as_chunks_mut::<MLP_BATCH>().0.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3);
    for ((((o, &x0), &x1), &x2), &x3) in it {
        *o = [x0, x1, x2, x3];
    }
}

/// Runs the MLP on [`MLP_BATCH`] input vectors at once (`inputs` holds
/// `MLP_BATCH × model.input_dim()` values, one candidate after another;
/// unused rows may hold anything) and writes the logits to `logits`.
/// Bit-identical to [`mlp_forward`] per row, whichever kernel each layer uses.
pub fn mlp_forward_batch(
    model: &Model,
    inputs: &[f32],
    a: &mut Vec<f32>,
    b: &mut Vec<f32>,
    logits: &mut [f32; MLP_BATCH],
) {
    let width = model.input_dim();
    let mut layout = model.mlp.first().map_or(Layout::Rows, |l| layout_for(l.inputs, Layout::Rows));
    let rows = if inputs.len() >= width * MLP_BATCH {
        &inputs[..width * MLP_BATCH]
    } else {
        b.clear();
        b.extend_from_slice(inputs);
        b.resize(width * MLP_BATCH, 0.0);
        &b[..]
    };
    a.clear();
    match layout {
        Layout::Rows => a.extend_from_slice(rows),
        Layout::Interleaved => {
            a.resize(width * MLP_BATCH, 0.0);
            interleave(rows, width, a);
        }
    }
    let last = model.mlp.len().saturating_sub(1);
    for (k, layer) in model.mlp.iter().enumerate() {
        let want = layout_for(layer.inputs, layout);
        if want != layout {
            relayout(a, b, layer.inputs, layout);
            layout = want;
        }
        match layout {
            Layout::Rows => layer_rows(layer, a, b, k != last),
            Layout::Interleaved => layer_interleaved(layer, a, b, k != last),
        }
        core::mem::swap(a, b);
    }
    // Output 0 of the last layer (a valid model's only one), as `mlp_forward` returns it.
    let outputs = model.mlp.last().map_or(0, |l| l.outputs);
    for (bi, l) in logits.iter_mut().enumerate() {
        let at = match layout {
            Layout::Rows => bi * outputs,
            Layout::Interleaved => bi,
        };
        *l = if outputs == 0 { f32::NAN } else { a.get(at).copied().unwrap_or(f32::NAN) };
    }
}
