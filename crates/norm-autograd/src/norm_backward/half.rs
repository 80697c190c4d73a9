//! The half-precision backward (`bf16`, `f16`): the f32 backward kernels over 16-bit
//! rows, as the half-precision forward is the f32 forward over them. The kernels read
//! `x` and `dy` as bf16/f16 and widen them in registers as they load, and round each dx
//! once (to nearest, ties to even) as they store it (`kernels.rs`, `Halves`): no scratch
//! rows and no conversion passes. The widening is exact and the arithmetic is the f32
//! kernel's, on the f32 block driver (`blocks.rs`), so dgamma and dbeta (f32) are
//! bit-identical to the f32 backward of the widened inputs and independent of the
//! thread count, and dx is that backward's dx rounded once.

use std::marker::PhantomData;

use ndarray::{Array, Array1, ArrayRef, Dimension};
use norm_core::dispatch::ForcedPath;
use norm_core::simd::{Stores, run_on, widen};
use norm_core::{Half, LayerNorm, LayerNormStats, RmsNorm, RmsNormStats};

use super::NormGrads;
use super::blocks::{Sweep, Totals, drive};
use super::slice::{BackwardInput, GradSlices, Saved, check};
use crate::GradError;
use crate::kernels::{Backward, Grads, Halves, Kind, Ln, Rms, Rows};

/// The backward of either norm over half-precision rows on an explicit kernel path and
/// [`Sweep`] (test and bench hook; the public functions are this with
/// [`ForcedPath::detected`] and [`Sweep::Auto`]). `input.eps` and the saved statistics
/// are f32 (what the half-precision forward returns), dgamma/dbeta f32, dx in `H`.
///
/// # Errors
/// As [`layer_norm_backward_half_slice`].
pub fn backward_half_slice_on<H: Half>(
    path: ForcedPath,
    sweep: Sweep,
    input: BackwardInput<'_, H, f32>,
    grads: GradSlices<'_, H, f32>,
) -> Result<(), GradError> {
    let rows = check(&input, &grads)?;
    let d = input.weight.len();
    let mut w32 = vec![0.0f32; d];
    widen(path.simd_path(), input.weight, &mut w32);
    let (mean, r) = match input.saved {
        Saved::LayerNorm { mean, rstd } => (mean, rstd),
        Saved::RmsNorm { rrms } => (&[][..], rrms),
    };
    let all = HalfRows {
        x: input.x,
        dy: input.dy,
        mean,
        r,
        eps: input.eps,
    };
    match input.saved {
        Saved::LayerNorm { .. } => run::<H, Ln>(path, sweep, rows, &w32, all, grads),
        Saved::RmsNorm { .. } => run::<H, Rms>(path, sweep, rows, &w32, all, grads),
    }
    Ok(())
}

/// What the half-precision backward reads: rows in `H`, statistics and eps in f32.
#[derive(Clone, Copy)]
struct HalfRows<'a, H> {
    x: &'a [H],
    dy: &'a [H],
    mean: &'a [f32],
    r: &'a [f32],
    eps: f32,
}

/// Drives the row kernel of `K` over every reduction block of `rows` rows of `H`.
fn run<H: Half, K: Kind>(
    path: ForcedPath,
    sweep: Sweep,
    rows: usize,
    weight: &[f32],
    all: HalfRows<'_, H>,
    grads: GradSlices<'_, H, f32>,
) {
    let d = weight.len();
    // From the bytes the call moves (x and dy read, dx written), once for the whole call.
    let moved = all.x.len() + all.dy.len() + grads.dx.len();
    let stores = if path
        .stores()
        .stream_moved(std::mem::size_of::<H>().saturating_mul(moved))
    {
        Stores::Streaming
    } else {
        Stores::Cached
    };
    let totals = Totals {
        dgamma: grads.dgamma,
        dbeta: grads.dbeta,
    };
    drive(
        sweep,
        rows,
        weight,
        grads.dx,
        totals,
        |rr, weight, dx: &mut [H], dgamma, dbeta| {
            let e = rr.start * d..rr.end * d;
            let rows = Rows {
                x: &all.x[e.clone()],
                dy: &all.dy[e],
                mean: if K::CENTER { &all.mean[rr.clone()] } else { &[] },
                r: &all.r[rr],
                weight,
                eps: all.eps,
            };
            let grads = Grads {
                dx,
                stores,
                dgamma,
                dbeta,
            };
            run_on(
                path.simd_path(),
                Backward {
                    rows,
                    grads,
                    kind: PhantomData::<(K, Halves<H>)>,
                },
            );
        },
    );
}

/// LayerNorm backward over half-precision row-major rows: `grads.dx` in `H`,
/// `grads.dgamma`/`grads.dbeta` in f32 (all overwritten), from the f32 statistics of
/// [`LayerNorm::forward_slice_with_stats`].
///
/// ```text
/// x̂ = (x - mean)·rstd, g = dy·gamma,  dx = rstd·(g - mean(g) - x̂·mean(g·x̂))   (f32)
/// dx rounded once to H;   dgamma = Σ dy·x̂,  dbeta = Σ dy   (f32, fixed row blocks)
/// ```
///
/// # Errors
/// As [`layer_norm_backward_slice`](crate::layer_norm_backward_slice).
///
/// # Example
/// ```
/// use norm_core::{LayerNorm, bf16};
/// use norm_autograd::{GradSlices, layer_norm_backward_half_slice};
///
/// let ln = LayerNorm::<bf16>::new(3)?;
/// let x: Vec<bf16> = [1.0f32, 2.0, 4.0, -1.0, 0.0, 1.0].map(bf16::from_f32).to_vec();
/// let (mut y, mut mean, mut rstd) = (vec![bf16::ZERO; 6], [0.0f32; 2], [0.0f32; 2]);
/// ln.forward_slice_with_stats(&x, &mut y, &mut mean, &mut rstd)?;
/// let dy: Vec<bf16> = [1.0f32, 0.0, 0.0, 0.5, 0.5, -1.0].map(bf16::from_f32).to_vec();
/// let (mut dx, mut dgamma, mut dbeta) = (vec![bf16::ZERO; 6], [0.0f32; 3], [0.0f32; 3]);
/// let grads = GradSlices { dx: &mut dx, dgamma: &mut dgamma, dbeta: Some(&mut dbeta) };
/// layer_norm_backward_half_slice(&ln, &x, &dy, &mean, &rstd, grads)?;
/// assert_eq!(dbeta, [1.5, 0.5, -1.0]);
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
pub fn layer_norm_backward_half_slice<H: Half>(
    norm: &LayerNorm<H>,
    x: &[H],
    dy: &[H],
    mean: &[f32],
    rstd: &[f32],
    grads: GradSlices<'_, H, f32>,
) -> Result<(), GradError> {
    let input = BackwardInput {
        weight: norm.weight(),
        eps: norm.eps(),
        x,
        dy,
        saved: Saved::LayerNorm { mean, rstd },
    };
    backward_half_slice_on(ForcedPath::detected(), Sweep::Auto, input, grads)
}

/// RmsNorm backward over half-precision row-major rows: dx in `H`, dgamma/dbeta in f32,
/// from the f32 `1/rms` of [`RmsNorm::forward_slice_with_stats`].
///
/// # Errors
/// As [`rms_norm_backward_slice`](crate::rms_norm_backward_slice).
pub fn rms_norm_backward_half_slice<H: Half>(
    norm: &RmsNorm<H>,
    x: &[H],
    dy: &[H],
    rrms: &[f32],
    grads: GradSlices<'_, H, f32>,
) -> Result<(), GradError> {
    let input = BackwardInput {
        weight: norm.weight(),
        eps: norm.eps(),
        x,
        dy,
        saved: Saved::RmsNorm { rrms },
    };
    backward_half_slice_on(ForcedPath::detected(), Sweep::Auto, input, grads)
}

/// Row-major contents of `a` (copied when it is not contiguous in standard order).
fn row_major<T: Copy, D: Dimension>(a: &ArrayRef<T, D>) -> std::borrow::Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

/// The ndarray form of either half-precision backward: checks shapes, runs the slice form.
fn half_nd<H: Half, D: Dimension>(
    (weight, eps, has_bias): (&[H], f32, bool),
    x: &ArrayRef<H, D>,
    stats: &[(&'static str, &ArrayRef<f32, D::Smaller>)],
    dy: &ArrayRef<H, D>,
) -> Result<(Array<H, D>, NormGrads<f32>), GradError> {
    let shapes: Vec<(&'static str, &[usize])> = stats.iter().map(|&(n, a)| (n, a.shape())).collect();
    super::nd::check_nd(weight.len(), x, dy, None, &shapes)?;
    let (xs, dys) = (row_major(x), row_major(dy));
    let st: Vec<_> = stats.iter().map(|&(_, a)| row_major(a)).collect();
    let saved = if stats.len() == 2 {
        Saved::LayerNorm {
            mean: &st[0],
            rstd: &st[1],
        }
    } else {
        Saved::RmsNorm { rrms: &st[0] }
    };
    let d = weight.len();
    let mut dx = vec![H::default(); xs.len()];
    let mut dgamma = vec![0.0f32; d];
    let mut dbeta = has_bias.then(|| vec![0.0f32; d]);
    let input = BackwardInput {
        weight,
        eps,
        x: &xs,
        dy: &dys,
        saved,
    };
    let grads = GradSlices {
        dx: &mut dx,
        dgamma: &mut dgamma,
        dbeta: dbeta.as_deref_mut(),
    };
    backward_half_slice_on(ForcedPath::detected(), Sweep::Auto, input, grads)?;
    // Cannot fail (dx has x's length), but if it did it would name the arrays.
    let got = vec![dx.len()];
    let dx = Array::from_shape_vec(x.raw_dim(), dx).map_err(|_| GradError::ShapeMismatch {
        what: "dx",
        expected: x.shape().to_vec(),
        got,
    })?;
    Ok((
        dx,
        NormGrads {
            dgamma: Array1::from(dgamma),
            dbeta: dbeta.map(Array1::from),
        },
    ))
}

/// LayerNorm backward over the last axis of a half-precision array (any rank and
/// layout): returns `dx` (in `H`, standard layout) and dgamma/dbeta in f32 (`dbeta`
/// only when the norm has a bias).
///
/// # Errors
/// As [`layer_norm_backward`](crate::layer_norm_backward).
///
/// # Example
/// ```
/// use ndarray::Array2;
/// use norm_core::{LayerNorm, f16};
/// use norm_autograd::layer_norm_backward_half;
///
/// let ln = LayerNorm::<f16>::new(4)?;
/// let x = Array2::from_shape_fn((3, 4), |(i, j)| f16::from_f32((i * j) as f32 - 1.5));
/// let (_, stats) = ln.forward_with_stats(&x)?; // f32 statistics
/// let dy = Array2::from_elem((3, 4), f16::ONE);
/// let (dx, grads) = layer_norm_backward_half(&ln, &x, &stats, &dy)?;
/// assert!(dx.iter().all(|v| v.to_f32().abs() < 1e-3)); // a constant dy is removed
/// assert_eq!(grads.dbeta.map(|b| b.to_vec()), Some(vec![3.0f32; 4]));
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
pub fn layer_norm_backward_half<H: Half, D: Dimension>(
    norm: &LayerNorm<H>,
    x: &ArrayRef<H, D>,
    stats: &LayerNormStats<f32, D::Smaller>,
    dy: &ArrayRef<H, D>,
) -> Result<(Array<H, D>, NormGrads<f32>), GradError> {
    let p = (norm.weight(), norm.eps(), norm.bias().is_some());
    half_nd(p, x, &[("mean", &stats.mean), ("rstd", &stats.rstd)], dy)
}

/// RmsNorm backward over the last axis of a half-precision array: `dx` in `H`,
/// dgamma/dbeta in f32.
///
/// # Errors
/// As [`rms_norm_backward`](crate::rms_norm_backward).
pub fn rms_norm_backward_half<H: Half, D: Dimension>(
    norm: &RmsNorm<H>,
    x: &ArrayRef<H, D>,
    stats: &RmsNormStats<f32, D::Smaller>,
    dy: &ArrayRef<H, D>,
) -> Result<(Array<H, D>, NormGrads<f32>), GradError> {
    let p = (norm.weight(), norm.eps(), norm.bias().is_some());
    half_nd(p, x, &[("rrms", &stats.rrms)], dy)
}
