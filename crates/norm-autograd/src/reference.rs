//! Slow, obviously correct twins of the backward kernels (`*_reference`): f64 throughout,
//! statistics recomputed from `x` in two passes, and `dx` as an explicit Jacobian-vector
//! product. Tests compare the fast kernels against them.

/// LayerNorm backward in f64 for row-major rows of length `weight.len()`:
/// returns `(dx, dgamma, dbeta)`.
///
/// ```text
/// ∂x̂_i/∂x_j = rstd·(δ_ij − 1/D) − rstd·x̂_i·x̂_j/D
/// dx_j = Σ_i dy_i·gamma_i·∂x̂_i/∂x_j,   dgamma = Σ_rows dy·x̂,   dbeta = Σ_rows dy
/// ```
///
/// # Example
/// ```
/// let (dx, dg, db) = norm_autograd::reference::layer_norm_backward_reference(
///     &[1.0f64, 3.0], &[1.0, 0.0], &[1.0, 1.0], 0.0);
/// assert!((dx[0] + dx[1]).abs() < 1e-15);
/// assert_eq!((dg, db), (vec![-1.0, 0.0], vec![1.0, 0.0]));
/// ```
pub fn layer_norm_backward_reference(
    x: &[f64],
    dy: &[f64],
    weight: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let d = weight.len();
    let df = d as f64;
    let mut dx = Vec::with_capacity(x.len());
    let mut dgamma = vec![0.0; d];
    let mut dbeta = vec![0.0; d];
    for (xr, dyr) in x.chunks(d.max(1)).zip(dy.chunks(d.max(1))) {
        // Center as (x - x0) - mean(x - x0): exact for rows with a large offset, where
        // the mean itself is not representable to the precision of the deviations.
        let x0 = xr.first().copied().unwrap_or(0.0);
        let ms = xr.iter().map(|v| v - x0).sum::<f64>() / df;
        let centered: Vec<f64> = xr.iter().map(|v| (v - x0) - ms).collect();
        let var = centered.iter().map(|c| c * c).sum::<f64>() / df;
        let rstd = 1.0 / (var + eps).sqrt();
        let xh: Vec<f64> = centered.iter().map(|c| c * rstd).collect();
        for j in 0..d {
            let mut s = 0.0;
            for i in 0..d {
                let delta = if i == j { 1.0 } else { 0.0 };
                let jac = rstd * (delta - 1.0 / df) - rstd * xh[i] * xh[j] / df;
                s += dyr[i] * weight[i] * jac;
            }
            dx.push(s);
            dgamma[j] += dyr[j] * xh[j];
            dbeta[j] += dyr[j];
        }
    }
    (dx, dgamma, dbeta)
}

/// RmsNorm backward in f64 for row-major rows of length `weight.len()`:
/// returns `(dx, dgamma, dbeta)`.
///
/// ```text
/// ∂x̂_i/∂x_j = rrms·δ_ij − rrms·x̂_i·x̂_j/D
/// dx_j = Σ_i dy_i·gamma_i·∂x̂_i/∂x_j,   dgamma = Σ_rows dy·x̂,   dbeta = Σ_rows dy
/// ```
///
/// # Example
/// ```
/// let (dx, _, _) = norm_autograd::reference::rms_norm_backward_reference(
///     &[3.0f64, 4.0], &[1.0, -2.0], &[1.0, 1.0], 0.0);
/// assert!((3.0 * dx[0] + 4.0 * dx[1]).abs() < 1e-15);
/// ```
pub fn rms_norm_backward_reference(
    x: &[f64],
    dy: &[f64],
    weight: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let d = weight.len();
    let df = d as f64;
    let mut dx = Vec::with_capacity(x.len());
    let mut dgamma = vec![0.0; d];
    let mut dbeta = vec![0.0; d];
    for (xr, dyr) in x.chunks(d.max(1)).zip(dy.chunks(d.max(1))) {
        let ms = xr.iter().map(|v| v * v).sum::<f64>() / df;
        let rrms = 1.0 / (ms + eps).sqrt();
        let xh: Vec<f64> = xr.iter().map(|v| v * rrms).collect();
        for j in 0..d {
            let mut s = 0.0;
            for i in 0..d {
                let delta = if i == j { 1.0 } else { 0.0 };
                s += dyr[i] * weight[i] * (rrms * delta - rrms * xh[i] * xh[j] / df);
            }
            dx.push(s);
            dgamma[j] += dyr[j] * xh[j];
            dbeta[j] += dyr[j];
        }
    }
    (dx, dgamma, dbeta)
}
