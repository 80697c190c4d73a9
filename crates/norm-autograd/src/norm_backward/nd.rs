//! The ndarray layer of the backward: arrays of any rank ≥ 1 and any layout, normalized
//! over the last axis. Checks shapes against the norm and the saved statistics, copies
//! non-contiguous inputs to row-major order, and calls the slice layer (`slice.rs`).

use std::borrow::Cow;

use ndarray::{Array, Array1, ArrayRef, Dimension};
use norm_core::{Float, LayerNorm, LayerNormStats, NormError, RmsNorm, RmsNormStats};

use super::NormGrads;
use norm_core::dispatch::ForcedPath;

use super::blocks::Sweep;
use super::slice::{BackwardInput, GradSlices, Saved, backward_slice_on};
use crate::GradError;

/// Row-major contents of `a`: borrowed when it is contiguous in standard order.
fn row_major<F: Float, D: Dimension>(a: &ArrayRef<F, D>) -> Cow<'_, [F]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}

/// Checks x, dy, dx and the statistics of an ndarray backward call.
pub(super) fn check_nd<F, D: Dimension>(
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
        if let Some(got) = got
            && got != shape
        {
            return Err(GradError::ShapeMismatch {
                what,
                expected: shape.to_vec(),
                got: got.to_vec(),
            });
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

/// The saved statistics of an ndarray call.
enum NdSaved<'a, F, E: Dimension> {
    LayerNorm(&'a LayerNormStats<F, E>),
    RmsNorm(&'a RmsNormStats<F, E>),
}

/// The parameter-gradient buffers of an ndarray call (`dim` long, overwritten).
struct GradBufs<'a, F> {
    dgamma: &'a mut [F],
    dbeta: Option<&'a mut [F]>,
}

/// The backward of either norm over the last axis, into the caller's buffers: checks
/// the shapes, copies non-contiguous arrays to row-major order, runs the slice layer.
fn backward_into<F: Float, D: Dimension>(
    (weight, eps): (&[F], F),
    x: &ArrayRef<F, D>,
    saved: NdSaved<'_, F, D::Smaller>,
    dy: &ArrayRef<F, D>,
    dx: &mut ArrayRef<F, D>,
    bufs: GradBufs<'_, F>,
) -> Result<(), GradError> {
    // Fixed-size lists: the call allocates nothing for contiguous arrays.
    let (stats, count) = match saved {
        NdSaved::LayerNorm(s) => ([("mean", &s.mean), ("rstd", &s.rstd)], 2),
        NdSaved::RmsNorm(s) => ([("rrms", &s.rrms), ("rrms", &s.rrms)], 1),
    };
    let shapes = stats.map(|(n, a)| (n, a.shape()));
    check_nd(weight.len(), x, dy, Some(dx.shape()), &shapes[..count])?;
    let (xs, dys) = (row_major(x), row_major(dy));
    let st = stats.map(|(_, a)| row_major(a));
    let saved = match saved {
        NdSaved::LayerNorm(_) => Saved::LayerNorm {
            mean: &st[0],
            rstd: &st[1],
        },
        NdSaved::RmsNorm(_) => Saved::RmsNorm { rrms: &st[0] },
    };
    let input = BackwardInput {
        weight,
        eps,
        x: &xs,
        dy: &dys,
        saved,
    };
    with_dx_slice(dx, |dxs| {
        let grads = GradSlices {
            dx: dxs,
            dgamma: bufs.dgamma,
            dbeta: bufs.dbeta,
        };
        backward_slice_on(ForcedPath::detected(), Sweep::Auto, input, grads)
    })
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
pub fn layer_norm_backward_into<F: Float, D: Dimension>(
    norm: &LayerNorm<F>,
    x: &ArrayRef<F, D>,
    stats: &LayerNormStats<F, D::Smaller>,
    dy: &ArrayRef<F, D>,
    dx: &mut ArrayRef<F, D>,
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) -> Result<(), GradError> {
    backward_into(
        (norm.weight(), norm.eps()),
        x,
        NdSaved::LayerNorm(stats),
        dy,
        dx,
        GradBufs { dgamma, dbeta },
    )
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
    allocating(x.raw_dim(), norm.dim(), norm.bias().is_some(), |dx, dg, db| {
        layer_norm_backward_into(norm, x, stats, dy, dx, dg, db)
    })
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
pub fn rms_norm_backward_into<F: Float, D: Dimension>(
    norm: &RmsNorm<F>,
    x: &ArrayRef<F, D>,
    stats: &RmsNormStats<F, D::Smaller>,
    dy: &ArrayRef<F, D>,
    dx: &mut ArrayRef<F, D>,
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) -> Result<(), GradError> {
    backward_into(
        (norm.weight(), norm.eps()),
        x,
        NdSaved::RmsNorm(stats),
        dy,
        dx,
        GradBufs { dgamma, dbeta },
    )
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
    allocating(x.raw_dim(), norm.dim(), norm.bias().is_some(), |dx, dg, db| {
        rms_norm_backward_into(norm, x, stats, dy, dx, dg, db)
    })
}

/// The allocating backward forms: fresh `dx`, `dgamma` and (with a bias) `dbeta`,
/// filled by the matching `_into` function.
fn allocating<F: Float, D: Dimension>(
    shape: D,
    dim: usize,
    has_bias: bool,
    fill: impl FnOnce(&mut Array<F, D>, &mut [F], Option<&mut [F]>) -> Result<(), GradError>,
) -> Result<(Array<F, D>, NormGrads<F>), GradError> {
    let mut dx = Array::zeros(shape);
    let mut dgamma = vec![F::zero(); dim];
    let mut dbeta = has_bias.then(|| vec![F::zero(); dim]);
    fill(&mut dx, &mut dgamma, dbeta.as_deref_mut())?;
    Ok((
        dx,
        NormGrads {
            dgamma: Array1::from(dgamma),
            dbeta: dbeta.map(Array1::from),
        },
    ))
}
