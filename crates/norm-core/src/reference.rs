//! Slow, obviously correct twins of the kernels (`*_reference`): f64 throughout, two
//! passes, one row at a time. Tests and benchmarks compare the fast kernels against them.
//!
//! For `f32` inputs every intermediate fits f64 exactly enough (squares of 1e38 or 1e-45
//! are representable), so these are accurate over the whole f32 range. For `f64` inputs
//! they are accurate for |x| below about 1e150.

use crate::{Float, NormError};

/// The checks every norm makes: a non-empty weight, a bias as long, whole rows, a valid
/// eps. Returns the row length.
fn check<F: Float>(x: &[F], weight: &[F], bias: Option<&[F]>, eps: F) -> Result<usize, NormError> {
    let d = weight.len();
    if d == 0 {
        return Err(NormError::ZeroDim);
    }
    if let Some(b) = bias
        && b.len() != d
    {
        return Err(NormError::BiasLen {
            bias: b.len(),
            dim: d,
        });
    }
    if !x.len().is_multiple_of(d) {
        return Err(NormError::SliceLen { len: x.len(), dim: d });
    }
    crate::params::check_eps(eps)?;
    Ok(d)
}

/// Per-row LayerNorm in f64: returns `(y, mean, rstd)` for row-major `x` with rows of
/// length `weight.len()`.
///
/// ```text
/// mean = Σx/D;  var = Σ(x-mean)²/D;  y = (x-mean)/sqrt(var+eps)·w + b
/// ```
///
/// # Errors
/// The same checks as [`LayerNorm::forward_slice`](crate::LayerNorm::forward_slice):
/// [`NormError::ZeroDim`] for an empty weight, [`NormError::BiasLen`] if the bias length
/// differs, [`NormError::SliceLen`] if `x` is not whole rows, [`NormError::InvalidEps`]
/// for a negative, NaN or infinite eps.
///
/// # Example
/// ```
/// use norm_core::reference::layer_norm_reference;
///
/// let (y, mean, _) = layer_norm_reference(&[1.0f32, 3.0], &[1.0, 1.0], None, 0.0)?;
/// assert_eq!((y, mean), (vec![-1.0, 1.0], vec![2.0]));
/// assert!(layer_norm_reference(&[1.0f32, 3.0, 5.0], &[1.0, 1.0], None, 0.0).is_err());
/// # Ok::<(), norm_core::NormError>(())
/// ```
#[allow(clippy::type_complexity)]
pub fn layer_norm_reference<F: Float>(
    x: &[F],
    weight: &[F],
    bias: Option<&[F]>,
    eps: F,
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>), NormError> {
    let d = check(x, weight, bias, eps)?;
    let eps = eps.to_f64_exact();
    let mut y = Vec::with_capacity(x.len());
    let (mut means, mut rstds) = (Vec::new(), Vec::new());
    for row in x.chunks_exact(d) {
        let row: Vec<f64> = row.iter().map(|v| v.to_f64_exact()).collect();
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        for (j, (v, w)) in row.iter().zip(weight).enumerate() {
            let b = bias.and_then(|b| b.get(j)).map_or(0.0, |b| b.to_f64_exact());
            y.push((v - mean) * rstd * w.to_f64_exact() + b);
        }
        means.push(mean);
        rstds.push(rstd);
    }
    Ok((y, means, rstds))
}

/// Per-row RMSNorm in f64: returns `(y, rrms)` for row-major `x` with rows of length
/// `weight.len()`.
///
/// ```text
/// ms = Σx²/D;  y = x/sqrt(ms+eps)·w + b
/// ```
///
/// # Errors
/// As [`layer_norm_reference`].
///
/// # Example
/// ```
/// use norm_core::reference::rms_norm_reference;
///
/// let (y, rrms) = rms_norm_reference(&[3.0f64, 4.0], &[1.0, 1.0], None, 0.0)?;
/// assert!((rrms[0] - 1.0 / 12.5f64.sqrt()).abs() < 1e-15);
/// assert!((y[1] - 4.0 / 12.5f64.sqrt()).abs() < 1e-15);
/// assert!(rms_norm_reference(&[3.0f64, 4.0], &[], None, 0.0).is_err());
/// # Ok::<(), norm_core::NormError>(())
/// ```
pub fn rms_norm_reference<F: Float>(
    x: &[F],
    weight: &[F],
    bias: Option<&[F]>,
    eps: F,
) -> Result<(Vec<f64>, Vec<f64>), NormError> {
    let d = check(x, weight, bias, eps)?;
    let eps = eps.to_f64_exact();
    let mut y = Vec::with_capacity(x.len());
    let mut rrmss = Vec::new();
    for row in x.chunks_exact(d) {
        let row: Vec<f64> = row.iter().map(|v| v.to_f64_exact()).collect();
        let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let rrms = 1.0 / (ms + eps).sqrt();
        for (j, (v, w)) in row.iter().zip(weight).enumerate() {
            let b = bias.and_then(|b| b.get(j)).map_or(0.0, |b| b.to_f64_exact());
            y.push(v * rrms * w.to_f64_exact() + b);
        }
        rrmss.push(rrms);
    }
    Ok((y, rrmss))
}
