//! Slow, obviously correct twins of the kernels (`*_reference`): f64 throughout, two
//! passes, one row at a time. Tests and benchmarks compare the fast kernels against them.
//!
//! For `f32` inputs every intermediate fits f64 exactly enough (squares of 1e38 or 1e-45
//! are representable), so these are accurate over the whole f32 range. For `f64` inputs
//! they are accurate for |x| below about 1e150.

use crate::Float;

/// Per-row LayerNorm in f64: returns `(y, mean, rstd)` for row-major `x` with rows of
/// length `weight.len()`.
///
/// ```text
/// mean = Σx/D;  var = Σ(x-mean)²/D;  y = (x-mean)/sqrt(var+eps)·w + b
/// ```
///
/// # Example
/// ```
/// let (y, mean, _) = norm_core::reference::layer_norm_reference(&[1.0f32, 3.0], &[1.0, 1.0], None, 0.0);
/// assert_eq!((y, mean), (vec![-1.0, 1.0], vec![2.0]));
/// ```
pub fn layer_norm_reference<F: Float>(
    x: &[F],
    weight: &[F],
    bias: Option<&[F]>,
    eps: F,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let d = weight.len();
    let eps = eps.to_f64_exact();
    let mut y = Vec::with_capacity(x.len());
    let (mut means, mut rstds) = (Vec::new(), Vec::new());
    for row in x.chunks(d.max(1)) {
        let row: Vec<f64> = row.iter().map(|v| v.to_f64_exact()).collect();
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        for (i, v) in row.iter().enumerate() {
            let b = bias.map_or(0.0, |b| b[i].to_f64_exact());
            y.push((v - mean) * rstd * weight[i].to_f64_exact() + b);
        }
        means.push(mean);
        rstds.push(rstd);
    }
    (y, means, rstds)
}

/// Per-row RMSNorm in f64: returns `(y, rrms)` for row-major `x` with rows of length
/// `weight.len()`.
///
/// ```text
/// ms = Σx²/D;  y = x/sqrt(ms+eps)·w + b
/// ```
///
/// # Example
/// ```
/// let (y, rrms) = norm_core::reference::rms_norm_reference(&[3.0f64, 4.0], &[1.0, 1.0], None, 0.0);
/// assert!((rrms[0] - 1.0 / 12.5f64.sqrt()).abs() < 1e-15);
/// # let _ = y;
/// ```
pub fn rms_norm_reference<F: Float>(
    x: &[F],
    weight: &[F],
    bias: Option<&[F]>,
    eps: F,
) -> (Vec<f64>, Vec<f64>) {
    let d = weight.len();
    let eps = eps.to_f64_exact();
    let mut y = Vec::with_capacity(x.len());
    let mut rrmss = Vec::new();
    for row in x.chunks(d.max(1)) {
        let row: Vec<f64> = row.iter().map(|v| v.to_f64_exact()).collect();
        let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let rrms = 1.0 / (ms + eps).sqrt();
        for (i, v) in row.iter().enumerate() {
            let b = bias.map_or(0.0, |b| b[i].to_f64_exact());
            y.push(v * rrms * weight[i].to_f64_exact() + b);
        }
        rrmss.push(rrms);
    }
    (y, rrmss)
}
