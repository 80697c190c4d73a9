//! The plain-slice layer of the backward: row-major `&[F]` rows in, the caller's
//! buffers out. Validates every length (a [`GradError`] naming it, never a panic),
//! resolves the kernel path and the store policy, and hands whole reduction blocks of
//! the one generic row kernel (`kernels.rs`) to the block driver (`blocks.rs`).

use std::marker::PhantomData;

use norm_core::dispatch::ForcedPath;
use norm_core::simd::{Stores, run_on};
use norm_core::{Float, LayerNorm, NormError, RmsNorm};

use super::blocks::{Sweep, Totals, drive};
use crate::GradError;
use crate::kernels::{Backward, Grads, Kind, Ln, Plain, Rms, Rows};

/// The statistics a forward pass saved, one value per row.
#[derive(Debug, Clone, Copy)]
pub enum Saved<'a, F> {
    /// LayerNorm's mean and `1/std` (as written by
    /// [`LayerNorm::forward_slice_with_stats`]).
    LayerNorm {
        /// Per-row mean.
        mean: &'a [F],
        /// Per-row `1/√(σ² + ε)`.
        rstd: &'a [F],
    },
    /// RMSNorm's `1/rms` (as written by [`RmsNorm::forward_slice_with_stats`]).
    RmsNorm {
        /// Per-row `1/√(mean(x²) + ε)`.
        rrms: &'a [F],
    },
}

/// What a slice backward reads: gamma, the forward's input, the output gradient and the
/// saved statistics (row-major rows of `weight.len()`). `A` is the type of eps and of the
/// statistics: `F` itself for f32/f64, f32 for the half-precision backward.
#[derive(Debug, Clone, Copy)]
pub struct BackwardInput<'a, F, A = F> {
    /// gamma (`d`).
    pub weight: &'a [F],
    /// The norm's eps: read only for rows whose saved statistics left the normal range
    /// (an eps = 0 row of subnormals saves `1/std = +∞`), which are recomputed from `x`.
    pub eps: A,
    /// The forward's input (`rows·d`).
    pub x: &'a [F],
    /// dL/dy (`rows·d`).
    pub dy: &'a [F],
    /// The forward's statistics (`rows` each).
    pub saved: Saved<'a, A>,
}

/// Where a slice backward writes (every buffer overwritten, none accumulated).
///
/// # Example
/// ```
/// use norm_autograd::GradSlices;
///
/// let (mut dx, mut dgamma) = ([0.0f32; 6], [0.0f32; 3]);
/// let grads = GradSlices { dx: &mut dx, dgamma: &mut dgamma, dbeta: None };
/// assert_eq!(grads.dx.len(), 6);
/// ```
///
/// `A` is the type of dgamma/dbeta: `F` itself for f32/f64, f32 for the half-precision
/// backward (`dx` in bf16/f16).
#[derive(Debug)]
pub struct GradSlices<'a, F, A = F> {
    /// dL/dx (`rows·d`).
    pub dx: &'a mut [F],
    /// dL/dgamma (`d`).
    pub dgamma: &'a mut [A],
    /// dL/dbeta (`d`), when wanted. It may be asked for even when the norm has no
    /// bias: it is then the gradient a bias would get.
    pub dbeta: Option<&'a mut [A]>,
}

/// Checks the lengths of a slice-level backward call; returns the number of rows.
pub(super) fn check<F, A>(
    input: &BackwardInput<'_, F, A>,
    grads: &GradSlices<'_, F, A>,
) -> Result<usize, GradError> {
    let (d, x) = (input.weight.len(), input.x);
    if d == 0 {
        return Err(NormError::ZeroDim.into());
    }
    if !x.len().is_multiple_of(d) {
        return Err(NormError::SliceLen { len: x.len(), dim: d }.into());
    }
    for (name, got) in [("dy", input.dy.len()), ("dx", grads.dx.len())] {
        if got != x.len() {
            return Err(NormError::BufferLen {
                name,
                got,
                expected: x.len(),
            }
            .into());
        }
    }
    let rows = x.len() / d;
    let stats: &[(&'static str, usize)] = match input.saved {
        Saved::LayerNorm { mean, rstd } => &[("mean", mean.len()), ("rstd", rstd.len())],
        Saved::RmsNorm { rrms } => &[("rrms", rrms.len())],
    };
    for &(name, got) in stats {
        if got != rows {
            return Err(NormError::StatsShape {
                name,
                got: vec![got],
                expected: vec![rows],
            }
            .into());
        }
    }
    let dbeta = grads.dbeta.as_deref().map(<[A]>::len);
    for (what, got) in [("dgamma", Some(grads.dgamma.len())), ("dbeta", dbeta)] {
        if let Some(got) = got
            && got != d
        {
            return Err(GradError::ShapeMismatch {
                what,
                expected: vec![d],
                got: vec![got],
            });
        }
    }
    Ok(rows)
}

/// The backward of either norm on an explicit kernel path and [`Sweep`] (test and
/// bench hook; the public functions are this with [`ForcedPath::detected`] and
/// [`Sweep::Auto`]).
///
/// # Errors
/// As [`layer_norm_backward_slice`].
pub fn backward_slice_on<F: Float>(
    path: ForcedPath,
    sweep: Sweep,
    input: BackwardInput<'_, F>,
    grads: GradSlices<'_, F>,
) -> Result<(), GradError> {
    let rows = check(&input, &grads)?;
    let (mean, r) = match input.saved {
        Saved::LayerNorm { mean, rstd } => (mean, rstd),
        Saved::RmsNorm { rrms } => (&[][..], rrms),
    };
    let all = Rows {
        x: input.x,
        dy: input.dy,
        mean,
        r,
        weight: input.weight,
        eps: input.eps,
    };
    match input.saved {
        Saved::LayerNorm { .. } => run::<F, Ln>(path, sweep, rows, all, grads),
        Saved::RmsNorm { .. } => run::<F, Rms>(path, sweep, rows, all, grads),
    }
    Ok(())
}

/// Drives the row kernel of `kind` over all reduction blocks of `rows` checked rows.
fn run<F: Float, K: Kind>(
    path: ForcedPath,
    sweep: Sweep,
    rows: usize,
    all: Rows<'_, F>,
    grads: GradSlices<'_, F>,
) {
    let d = all.weight.len();
    // Whether dx streams is decided once for the whole array, never per block or thread.
    // From the bytes the call moves (x and dy read, dx written), once for the whole call.
    let moved = all.x.len() + all.dy.len() + grads.dx.len();
    let stores = if path
        .stores()
        .stream_moved(std::mem::size_of::<F>().saturating_mul(moved))
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
        all.weight,
        grads.dx,
        totals,
        |r, weight, dx, dgamma, dbeta| {
            let e = r.start * d..r.end * d;
            let rows = Rows {
                x: &all.x[e.clone()],
                dy: &all.dy[e],
                mean: if K::CENTER { &all.mean[r.clone()] } else { &[] },
                r: &all.r[r],
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
                    kind: PhantomData::<(K, Plain)>,
                },
            );
        },
    );
}

/// LayerNorm backward over row-major rows of length `norm.dim()`: writes `grads.dx`
/// (overwriting), `grads.dgamma` and, when given, `grads.dbeta` (both overwritten, not
/// accumulated).
///
/// ```text
/// x̂  = (x - mean)·rstd,   g = dy·gamma
/// dx = rstd·(g - mean(g) - x̂·mean(g·x̂))          (per row)
/// dgamma = Σ_rows dy·x̂,   dbeta = Σ_rows dy        (fixed row blocks, fixed order)
/// ```
///
/// `mean` and `rstd` are the statistics written by
/// [`LayerNorm::forward_slice_with_stats`]. `dbeta` may be passed even when the norm has
/// no bias: it is then the gradient a bias would get.
///
/// Rows at the extremes of `F` (an eps = 0 row of subnormals, which saves `rstd = +∞`;
/// rows near ±`F::MAX`) are recomputed from `x` in a scaled f64 form, so their x̂ and
/// the parameter gradients stay finite and dx is the true value rounded to `F`. A row
/// holding ±∞ or NaN gives a non-finite dx in that row only (and, through its x̂ and dy,
/// non-finite dgamma/dbeta). See `docs/math.md`, "The backward at the extremes".
///
/// # Errors
/// [`NormError::SliceLen`] if `x.len()` is not a multiple of `dim`,
/// [`NormError::BufferLen`] if `dy` or `dx` differ in length from `x`,
/// [`NormError::StatsShape`] if `mean`/`rstd` do not hold one value per row,
/// [`GradError::ShapeMismatch`] if `dgamma`/`dbeta` are not `dim` long.
///
/// # Example
/// ```
/// use norm_core::LayerNorm;
/// use norm_autograd::{GradSlices, layer_norm_backward_slice};
///
/// let ln = LayerNorm::<f64>::new(3)?;
/// let x = [1.0, 2.0, 4.0, -1.0, 0.0, 1.0];
/// let (mut y, mut mean, mut rstd) = ([0.0; 6], [0.0; 2], [0.0; 2]);
/// ln.forward_slice_with_stats(&x, &mut y, &mut mean, &mut rstd)?;
/// let dy = [1.0, 0.0, 0.0, 0.5, 0.5, -1.0];
/// let (mut dx, mut dgamma, mut dbeta) = ([0.0; 6], [0.0; 3], [0.0; 3]);
/// let grads = GradSlices { dx: &mut dx, dgamma: &mut dgamma, dbeta: Some(&mut dbeta) };
/// layer_norm_backward_slice(&ln, &x, &dy, &mean, &rstd, grads)?;
/// assert!(dx[..3].iter().sum::<f64>().abs() < 1e-12); // LayerNorm's dx sums to zero per row
/// assert_eq!(dbeta, [1.5, 0.5, -1.0]);
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
pub fn layer_norm_backward_slice<F: Float>(
    norm: &LayerNorm<F>,
    x: &[F],
    dy: &[F],
    mean: &[F],
    rstd: &[F],
    grads: GradSlices<'_, F>,
) -> Result<(), GradError> {
    let input = BackwardInput {
        weight: norm.weight(),
        eps: norm.eps(),
        x,
        dy,
        saved: Saved::LayerNorm { mean, rstd },
    };
    backward_slice_on(ForcedPath::detected(), Sweep::Auto, input, grads)
}

/// RmsNorm backward over row-major rows of length `norm.dim()`: writes `grads.dx`,
/// `grads.dgamma` and, when given, `grads.dbeta` (all overwritten).
///
/// ```text
/// x̂  = x·rrms,   g = dy·gamma
/// dx = rrms·(g - x̂·mean(g·x̂))                     (per row)
/// dgamma = Σ_rows dy·x̂,   dbeta = Σ_rows dy        (fixed row blocks, fixed order)
/// ```
///
/// # Errors
/// As [`layer_norm_backward_slice`], with the statistic named `rrms`.
///
/// # Example
/// ```
/// use norm_core::RmsNorm;
/// use norm_autograd::{GradSlices, rms_norm_backward_slice};
///
/// let rms = RmsNorm::<f64>::new(2)?.with_eps(0.0)?;
/// let x = [3.0, 4.0];
/// let (mut y, mut rrms) = ([0.0; 2], [0.0; 1]);
/// rms.forward_slice_with_stats(&x, &mut y, &mut rrms)?;
/// let (mut dx, mut dgamma) = ([0.0; 2], [0.0; 2]);
/// let grads = GradSlices { dx: &mut dx, dgamma: &mut dgamma, dbeta: None };
/// rms_norm_backward_slice(&rms, &x, &[1.0, -2.0], &rrms, grads)?;
/// assert!((dx[0] * x[0] + dx[1] * x[1]).abs() < 1e-12); // with eps = 0, dx ⟂ x
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
pub fn rms_norm_backward_slice<F: Float>(
    norm: &RmsNorm<F>,
    x: &[F],
    dy: &[F],
    rrms: &[F],
    grads: GradSlices<'_, F>,
) -> Result<(), GradError> {
    let input = BackwardInput {
        weight: norm.weight(),
        eps: norm.eps(),
        x,
        dy,
        saved: Saved::RmsNorm { rrms },
    };
    backward_slice_on(ForcedPath::detected(), Sweep::Auto, input, grads)
}
