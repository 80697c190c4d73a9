//! LayerNorm and RmsNorm backward passes: the plain-slice layer (row-major `&[F]` rows,
//! the entry point a SIMD/threaded version replaces) and the ndarray layer (any rank, any
//! layout) on top of it. Both validate every shape and return `GradError`, never panic.

use std::borrow::Cow;

use ndarray::{Array, Array1, ArrayRef, Dimension};
use norm_core::{Float, LayerNorm, LayerNormStats, NormError, RmsNorm, RmsNormStats};

use crate::GradError;
use crate::kernels::{
    REDUCTION_BLOCK_ROWS, block_count, block_partials, combine_partials, layer_norm_backward_row,
    rms_norm_backward_row, run_blocked,
};

/// The parameter gradients of a norm: dL/dgamma and, when there is a bias, dL/dbeta.
///
/// ```text
/// dgamma_j = Σ_rows dy_j · x̂_j        dbeta_j = Σ_rows dy_j
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NormGrads<F> {
    /// Gradient of the weight (gamma), length `dim`.
    pub dgamma: Array1<F>,
    /// Gradient of the bias (beta), length `dim`; `None` when the norm has no bias.
    pub dbeta: Option<Array1<F>>,
}

/// Checks the lengths of a slice-level backward call; returns the number of rows.
fn check_slice_args<F>(
    d: usize,
    x: &[F],
    dy: &[F],
    dx: &[F],
    stats: &[(&'static str, usize)],
    dgamma: &[F],
    dbeta: Option<&[F]>,
) -> Result<usize, GradError> {
    if d == 0 {
        return Err(NormError::ZeroDim.into());
    }
    if x.len() % d != 0 {
        return Err(NormError::SliceLen { len: x.len(), dim: d }.into());
    }
    for (name, got) in [("dy", dy.len()), ("dx", dx.len())] {
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
    for (what, got) in [("dgamma", Some(dgamma.len())), ("dbeta", dbeta.map(<[F]>::len))] {
        if let Some(got) = got {
            if got != d {
                return Err(GradError::ShapeMismatch {
                    what,
                    expected: vec![d],
                    got: vec![got],
                });
            }
        }
    }
    Ok(rows)
}

/// How the slice drivers hand out rows: all in one serial sweep, or (for the
/// determinism tests) in groups of `n` reduction blocks processed last group first, the
/// way a thread pool might finish them.
#[derive(Debug, Clone, Copy)]
pub enum Sweep {
    /// All rows in one pass, block after block.
    Serial,
    /// Groups of this many reduction blocks, the last group first, partials combined
    /// afterwards in block order.
    Chunked(usize),
}

/// Drives `row(i, dx_row, partial_dgamma, partial_dbeta)` over all rows.
fn drive<F: Float>(
    sweep: Sweep,
    rows: usize,
    d: usize,
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
    row: impl Fn(usize, &mut [F], &mut [F], Option<&mut [F]>),
) {
    match sweep {
        Sweep::Serial => run_blocked(rows, d, dgamma, dbeta, |i, pg, pb| {
            row(i, &mut dx[i * d..(i + 1) * d], pg, pb);
        }),
        Sweep::Chunked(per_chunk) => {
            let per_chunk = per_chunk.max(1);
            let nb = block_count(rows);
            let with_dbeta = dbeta.is_some();
            let mut partials = vec![F::zero(); nb * 2 * d];
            let chunk_len = per_chunk * REDUCTION_BLOCK_ROWS * d;
            let starts: Vec<usize> = (0..nb).step_by(per_chunk).collect();
            for &b0 in starts.iter().rev() {
                let b1 = (b0 + per_chunk).min(nb);
                let part = &mut partials[b0 * 2 * d..b1 * 2 * d];
                let dx_chunk_start = b0 * REDUCTION_BLOCK_ROWS * d;
                let dx_chunk_end = (dx_chunk_start + chunk_len).min(dx.len());
                let dx_chunk = &mut dx[dx_chunk_start..dx_chunk_end];
                block_partials(b0..b1, rows, d, with_dbeta, part, |range, pg, mut pb| {
                    for i in range {
                        let off = i * d - dx_chunk_start;
                        row(i, &mut dx_chunk[off..off + d], pg, pb.as_deref_mut());
                    }
                });
            }
            combine_partials(&partials, d, dgamma, dbeta);
        }
    }
}

/// [`layer_norm_backward_slice`] with an explicit [`Sweep`] (test hook).
///
/// # Errors
/// As [`layer_norm_backward_slice`].
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward_slice_sweep<F: Float>(
    sweep: Sweep,
    weight: &[F],
    x: &[F],
    dy: &[F],
    mean: &[F],
    rstd: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) -> Result<(), GradError> {
    let d = weight.len();
    let rows = check_slice_args(
        d,
        x,
        dy,
        dx,
        &[("mean", mean.len()), ("rstd", rstd.len())],
        dgamma,
        dbeta.as_deref(),
    )?;
    drive(sweep, rows, d, dx, dgamma, dbeta, |i, dxr, pg, pb| {
        let r = i * d..(i + 1) * d;
        layer_norm_backward_row(&x[r.clone()], &dy[r], mean[i], rstd[i], weight, dxr, pg, pb);
    });
    Ok(())
}

/// [`rms_norm_backward_slice`] with an explicit [`Sweep`] (test hook).
///
/// # Errors
/// As [`rms_norm_backward_slice`].
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_backward_slice_sweep<F: Float>(
    sweep: Sweep,
    weight: &[F],
    x: &[F],
    dy: &[F],
    rrms: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) -> Result<(), GradError> {
    let d = weight.len();
    let rows = check_slice_args(d, x, dy, dx, &[("rrms", rrms.len())], dgamma, dbeta.as_deref())?;
    drive(sweep, rows, d, dx, dgamma, dbeta, |i, dxr, pg, pb| {
        let r = i * d..(i + 1) * d;
        rms_norm_backward_row(&x[r.clone()], &dy[r], rrms[i], weight, dxr, pg, pb);
    });
    Ok(())
}

/// LayerNorm backward over row-major rows of length `norm.dim()`: writes `dx`
/// (overwriting), `dgamma` and, when given, `dbeta` (both overwritten, not accumulated).
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
/// # Errors
/// [`NormError::SliceLen`] if `x.len()` is not a multiple of `dim`,
/// [`NormError::BufferLen`] if `dy` or `dx` differ in length from `x`,
/// [`NormError::StatsShape`] if `mean`/`rstd` do not hold one value per row,
/// [`GradError::ShapeMismatch`] if `dgamma`/`dbeta` are not `dim` long.
///
/// # Example
/// ```
/// use norm_core::LayerNorm;
/// use norm_autograd::layer_norm_backward_slice;
///
/// let ln = LayerNorm::<f64>::new(3)?;
/// let x = [1.0, 2.0, 4.0, -1.0, 0.0, 1.0];
/// let (mut y, mut mean, mut rstd) = ([0.0; 6], [0.0; 2], [0.0; 2]);
/// ln.forward_slice_with_stats(&x, &mut y, &mut mean, &mut rstd)?;
/// let dy = [1.0, 0.0, 0.0, 0.5, 0.5, -1.0];
/// let (mut dx, mut dgamma, mut dbeta) = ([0.0; 6], [0.0; 3], [0.0; 3]);
/// layer_norm_backward_slice(&ln, &x, &dy, &mean, &rstd, &mut dx, &mut dgamma, Some(&mut dbeta))?;
/// assert!(dx[..3].iter().sum::<f64>().abs() < 1e-12); // LayerNorm's dx sums to zero per row
/// assert_eq!(dbeta, [1.5, 0.5, -1.0]);
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward_slice<F: Float>(
    norm: &LayerNorm<F>,
    x: &[F],
    dy: &[F],
    mean: &[F],
    rstd: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) -> Result<(), GradError> {
    layer_norm_backward_slice_sweep(Sweep::Serial, norm.weight(), x, dy, mean, rstd, dx, dgamma, dbeta)
}

/// RmsNorm backward over row-major rows of length `norm.dim()`: writes `dx`, `dgamma`
/// and, when given, `dbeta` (all overwritten).
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
/// use norm_autograd::rms_norm_backward_slice;
///
/// let rms = RmsNorm::<f64>::new(2)?.with_eps(0.0)?;
/// let x = [3.0, 4.0];
/// let (mut y, mut rrms) = ([0.0; 2], [0.0; 1]);
/// rms.forward_slice_with_stats(&x, &mut y, &mut rrms)?;
/// let (mut dx, mut dgamma) = ([0.0; 2], [0.0; 2]);
/// rms_norm_backward_slice(&rms, &x, &[1.0, -2.0], &rrms, &mut dx, &mut dgamma, None)?;
/// assert!((dx[0] * x[0] + dx[1] * x[1]).abs() < 1e-12); // with eps = 0, dx ⟂ x
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_backward_slice<F: Float>(
    norm: &RmsNorm<F>,
    x: &[F],
    dy: &[F],
    rrms: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) -> Result<(), GradError> {
    rms_norm_backward_slice_sweep(Sweep::Serial, norm.weight(), x, dy, rrms, dx, dgamma, dbeta)
}

/// Row-major contents of `a`: borrowed when it is contiguous in standard order.
fn row_major<F: Float, D: Dimension>(a: &ArrayRef<F, D>) -> Cow<'_, [F]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}

/// Checks x, dy, dx and the statistics of an ndarray backward call.
fn check_nd<F, D: Dimension>(
    dim: usize,
    x: &ArrayRef<F, D>,
    dy: &ArrayRef<F, D>,
    dx: Option<&[usize]>,
    stats: &[(&'static str, &[usize])],
) -> Result<(), GradError> {
    let shape = x.shape();
    let Some((&last, lead)) = shape.split_last() else {
        return Err(NormError::ZeroRank.into());
    };
    if last != dim {
        return Err(NormError::FeatureMismatch {
            shape: shape.to_vec(),
            got: last,
            dim,
        }
        .into());
    }
    for (what, got) in [("dy", Some(dy.shape())), ("dx", dx)] {
        if let Some(got) = got {
            if got != shape {
                return Err(GradError::ShapeMismatch {
                    what,
                    expected: shape.to_vec(),
                    got: got.to_vec(),
                });
            }
        }
    }
    for &(name, got) in stats {
        if got != lead {
            return Err(NormError::StatsShape {
                name,
                got: got.to_vec(),
                expected: lead.to_vec(),
            }
            .into());
        }
    }
    Ok(())
}

/// Runs a slice-level backward writing into `dx` (any layout).
fn with_dx_slice<F: Float, D: Dimension>(
    dx: &mut ArrayRef<F, D>,
    f: impl FnOnce(&mut [F]) -> Result<(), GradError>,
) -> Result<(), GradError> {
    if let Some(s) = dx.as_slice_mut() {
        return f(s);
    }
    let mut tmp = vec![F::zero(); dx.len()];
    f(&mut tmp)?;
    for (o, &v) in dx.iter_mut().zip(&tmp) {
        *o = v;
    }
    Ok(())
}

/// LayerNorm backward over the last axis of an array of any rank ≥ 1 and any layout,
/// into the caller's buffers (`dx` same shape as `x`; `dgamma`, `dbeta` `dim` long; all
/// overwritten).
///
/// ```text
/// dx = rstd·(g - mean(g) - x̂·mean(g·x̂)),  g = dy·gamma,  x̂ = (x - mean)·rstd
/// ```
///
/// # Errors
/// [`NormError::ZeroRank`] / [`NormError::FeatureMismatch`] for a bad `x`,
/// [`GradError::ShapeMismatch`] if `dy` or `dx` differ in shape from `x` or
/// `dgamma`/`dbeta` are not `dim` long, [`NormError::StatsShape`] if the statistics are
/// not shaped like `x` without its last axis.
///
/// # Example
/// ```
/// use ndarray::{Array2, Array3};
/// use norm_core::LayerNorm;
/// use norm_autograd::layer_norm_backward_into;
///
/// let ln = LayerNorm::<f32>::new(8)?;
/// let x = Array3::<f32>::from_shape_fn((2, 3, 8), |(b, l, d)| (b + 2 * l) as f32 + (d * d) as f32 * 0.1);
/// let (_, stats) = ln.forward_with_stats(&x)?;
/// let dy = Array3::<f32>::ones((2, 3, 8));
/// let mut dx = Array3::<f32>::zeros((2, 3, 8));
/// let (mut dgamma, mut dbeta) = (vec![0.0f32; 8], vec![0.0f32; 8]);
/// layer_norm_backward_into(&ln, &x, &stats, &dy, &mut dx, &mut dgamma, Some(&mut dbeta))?;
/// assert!(dx.iter().all(|v| v.abs() < 1e-5)); // a constant dy is removed by the mean
/// assert_eq!(dbeta, vec![6.0f32; 8]);
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward_into<F: Float, D: Dimension>(
    norm: &LayerNorm<F>,
    x: &ArrayRef<F, D>,
    stats: &LayerNormStats<F, D::Smaller>,
    dy: &ArrayRef<F, D>,
    dx: &mut ArrayRef<F, D>,
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) -> Result<(), GradError> {
    check_nd(
        norm.dim(),
        x,
        dy,
        Some(dx.shape()),
        &[("mean", stats.mean.shape()), ("rstd", stats.rstd.shape())],
    )?;
    let (xs, dys) = (row_major(x), row_major(dy));
    let (mean, rstd) = (row_major(&stats.mean), row_major(&stats.rstd));
    with_dx_slice(dx, |dxs| {
        layer_norm_backward_slice(norm, &xs, &dys, &mean, &rstd, dxs, dgamma, dbeta)
    })
}

/// LayerNorm backward over the last axis: returns `dx` (shaped like `x`) and the
/// parameter gradients (`dbeta` only when the norm has a bias).
///
/// # Errors
/// As [`layer_norm_backward_into`].
///
/// # Example
/// ```
/// use ndarray::array;
/// use norm_core::LayerNorm;
/// use norm_autograd::layer_norm_backward;
///
/// let ln = LayerNorm::<f64>::new(3)?;
/// let x = array![[1.0, 2.0, 6.0], [0.0, -1.0, 1.0]];
/// let (_, stats) = ln.forward_with_stats(&x)?;
/// let (dx, grads) = layer_norm_backward(&ln, &x, &stats, &array![[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])?;
/// assert!(dx.row(0).sum().abs() < 1e-12);
/// assert_eq!(grads.dbeta.map(|b| b.to_vec()), Some(vec![1.0, 1.0, 0.0]));
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
pub fn layer_norm_backward<F: Float, D: Dimension>(
    norm: &LayerNorm<F>,
    x: &ArrayRef<F, D>,
    stats: &LayerNormStats<F, D::Smaller>,
    dy: &ArrayRef<F, D>,
) -> Result<(Array<F, D>, NormGrads<F>), GradError> {
    let mut dx = Array::zeros(x.raw_dim());
    let mut dgamma = Array1::zeros(norm.dim());
    let mut dbeta = norm.bias().map(|_| Array1::zeros(norm.dim()));
    let dgs = dgamma.as_slice_mut().ok_or(NormError::ZeroDim)?;
    let dbs = match dbeta.as_mut() {
        Some(b) => Some(b.as_slice_mut().ok_or(NormError::ZeroDim)?),
        None => None,
    };
    layer_norm_backward_into(norm, x, stats, dy, &mut dx, dgs, dbs)?;
    Ok((dx, NormGrads { dgamma, dbeta }))
}

/// RmsNorm backward over the last axis of an array of any rank ≥ 1 and any layout, into
/// the caller's buffers (all overwritten).
///
/// ```text
/// dx = rrms·(g - x̂·mean(g·x̂)),  g = dy·gamma,  x̂ = x·rrms
/// ```
///
/// # Errors
/// As [`layer_norm_backward_into`], with the statistic named `rrms`.
///
/// # Example
/// ```
/// use ndarray::Array2;
/// use norm_core::RmsNorm;
/// use norm_autograd::rms_norm_backward_into;
///
/// let rms = RmsNorm::<f64>::new(4)?;
/// let x = Array2::<f64>::from_shape_fn((4, 3), |(i, j)| (i * 3 + j) as f64 - 5.0);
/// let xt = x.t(); // a (3, 4) transposed view
/// let (_, stats) = rms.forward_with_stats(&xt)?;
/// let dy = Array2::<f64>::ones((3, 4));
/// let mut dx = Array2::<f64>::zeros((3, 4));
/// let mut dgamma = vec![0.0; 4];
/// rms_norm_backward_into(&rms, &xt, &stats, &dy, &mut dx, &mut dgamma, None)?;
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_backward_into<F: Float, D: Dimension>(
    norm: &RmsNorm<F>,
    x: &ArrayRef<F, D>,
    stats: &RmsNormStats<F, D::Smaller>,
    dy: &ArrayRef<F, D>,
    dx: &mut ArrayRef<F, D>,
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) -> Result<(), GradError> {
    check_nd(
        norm.dim(),
        x,
        dy,
        Some(dx.shape()),
        &[("rrms", stats.rrms.shape())],
    )?;
    let (xs, dys, rrms) = (row_major(x), row_major(dy), row_major(&stats.rrms));
    with_dx_slice(dx, |dxs| {
        rms_norm_backward_slice(norm, &xs, &dys, &rrms, dxs, dgamma, dbeta)
    })
}

/// RmsNorm backward over the last axis: returns `dx` (shaped like `x`) and the parameter
/// gradients (`dbeta` only when the norm has a bias).
///
/// # Errors
/// As [`rms_norm_backward_into`].
///
/// # Example
/// ```
/// use ndarray::array;
/// use norm_core::RmsNorm;
/// use norm_autograd::rms_norm_backward;
///
/// let rms = RmsNorm::<f64>::new(2)?;
/// let x = array![[3.0, 4.0]];
/// let (_, stats) = rms.forward_with_stats(&x)?;
/// let (dx, grads) = rms_norm_backward(&rms, &x, &stats, &array![[1.0, 1.0]])?;
/// assert!(grads.dbeta.is_none());
/// assert!((grads.dgamma[0] - 3.0 * stats.rrms[0]).abs() < 1e-15);
/// # let _ = dx;
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
pub fn rms_norm_backward<F: Float, D: Dimension>(
    norm: &RmsNorm<F>,
    x: &ArrayRef<F, D>,
    stats: &RmsNormStats<F, D::Smaller>,
    dy: &ArrayRef<F, D>,
) -> Result<(Array<F, D>, NormGrads<F>), GradError> {
    let mut dx = Array::zeros(x.raw_dim());
    let mut dgamma = Array1::zeros(norm.dim());
    let mut dbeta = norm.bias().map(|_| Array1::zeros(norm.dim()));
    let dgs = dgamma.as_slice_mut().ok_or(NormError::ZeroDim)?;
    let dbs = match dbeta.as_mut() {
        Some(b) => Some(b.as_slice_mut().ok_or(NormError::ZeroDim)?),
        None => None,
    };
    rms_norm_backward_into(norm, x, stats, dy, &mut dx, dgs, dbs)?;
    Ok((dx, NormGrads { dgamma, dbeta }))
}
