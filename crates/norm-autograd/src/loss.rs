//! Losses with their gradients (mean squared error, softmax cross-entropy), and the
//! numerically stable row softmax they and the attention share.

use ndarray::{Array, Array2, ArrayRef, ArrayRef2, Axis, Dimension, Zip};
use norm_core::Float;

use crate::GradError;
use crate::linear::fit;

/// Mean squared error over all entries and its gradient.
///
/// ```text
/// L = (1/n)·Σ (p − t)²,   dL/dp = 2·(p − t)/n        (n = number of entries)
/// ```
///
/// # Errors
/// [`GradError::ShapeMismatch`] if `target` is not shaped like `pred`;
/// [`GradError::ZeroSize`] for an empty input.
///
/// # Example
/// ```
/// use ndarray::array;
/// let (loss, grad) = norm_autograd::mse_loss(&array![1.0, 3.0], &array![0.0, 0.0])?;
/// assert_eq!(loss, 5.0);
/// assert_eq!(grad, array![1.0, 3.0]);
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
pub fn mse_loss<F: Float, D: Dimension>(
    pred: &ArrayRef<F, D>,
    target: &ArrayRef<F, D>,
) -> Result<(F, Array<F, D>), GradError> {
    if pred.shape() != target.shape() {
        return Err(GradError::ShapeMismatch {
            what: "target",
            expected: pred.shape().to_vec(),
            got: target.shape().to_vec(),
        });
    }
    if pred.is_empty() {
        return Err(GradError::ZeroSize { what: "pred" });
    }
    let n = F::from_usize(pred.len()).unwrap_or_else(F::one);
    let two = F::one() + F::one();
    let mut grad = Array::zeros(pred.raw_dim());
    let mut loss = F::zero();
    Zip::from(&mut grad).and(pred).and(target).for_each(|g, &p, &t| {
        let e = p - t;
        loss += e * e;
        *g = two * e / n;
    });
    Ok((loss / n, grad))
}

/// Row softmax, stable: `exp(s − max s) / Σ exp(s − max s)` per row. Entries equal to
/// `−∞` (masked) get probability 0; a row that is all `−∞` gets all zeros.
///
/// # Example
/// ```
/// use ndarray::array;
/// let p = norm_autograd::softmax_rows(&array![[1000.0, 1000.0], [0.0, f64::NEG_INFINITY]]);
/// assert_eq!(p, array![[0.5, 0.5], [1.0, 0.0]]);
/// ```
pub fn softmax_rows<F: Float>(s: &ArrayRef2<F>) -> Array2<F> {
    let mut p = Array2::zeros(s.raw_dim());
    softmax_rows_into(s, &mut p);
    p
}

/// [`softmax_rows`] into the caller's `p` (reshaped only when its shape differs).
pub fn softmax_rows_into<F: Float>(s: &ArrayRef2<F>, p: &mut Array2<F>) {
    fit(p, s.raw_dim());
    p.assign(s);
    for mut row in p.rows_mut() {
        let m = row.iter().fold(F::neg_infinity(), |a, &v| a.max(v));
        if m == F::neg_infinity() {
            row.fill(F::zero());
            continue;
        }
        let mut z = F::zero();
        for v in row.iter_mut() {
            *v = (*v - m).exp();
            z += *v;
        }
        let inv = F::one() / z;
        row.mapv_inplace(|v| v * inv);
    }
}

/// Softmax cross-entropy of `(N, C)` logits against class indices, averaged over rows,
/// and its gradient.
///
/// ```text
/// L = −(1/N)·Σ_i log softmax(z_i)[t_i],   dL/dz = (softmax(z) − onehot(t)) / N
/// ```
///
/// `log softmax` is computed as `z − max z − log Σ exp(z − max z)`.
///
/// # Errors
/// [`GradError::ShapeMismatch`] if `targets.len()` differs from the number of rows;
/// [`GradError::ZeroSize`] for zero rows or classes; [`GradError::ClassOutOfRange`]
/// for a target `≥ C`.
///
/// # Example
/// ```
/// use ndarray::array;
/// let (loss, grad) = norm_autograd::softmax_cross_entropy(&array![[0.0, 0.0]], &[1])?;
/// assert!((loss - 2f64.ln()).abs() < 1e-15);
/// assert_eq!(grad, array![[0.5, -0.5]]);
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
pub fn softmax_cross_entropy<F: Float>(
    logits: &ArrayRef2<F>,
    targets: &[usize],
) -> Result<(F, Array2<F>), GradError> {
    let mut grad = Array2::zeros(logits.raw_dim());
    let loss = softmax_cross_entropy_into(logits, targets, &mut grad)?;
    Ok((loss, grad))
}

/// [`softmax_cross_entropy`] with the gradient written into the caller's `grad`
/// (reshaped only when its shape differs); returns the loss.
///
/// # Errors
/// As [`softmax_cross_entropy`].
pub fn softmax_cross_entropy_into<F: Float>(
    logits: &ArrayRef2<F>,
    targets: &[usize],
    grad: &mut Array2<F>,
) -> Result<F, GradError> {
    let (n, c) = logits.dim();
    if targets.len() != n {
        return Err(GradError::ShapeMismatch {
            what: "targets",
            expected: vec![n],
            got: vec![targets.len()],
        });
    }
    if n == 0 {
        return Err(GradError::ZeroSize { what: "rows" });
    }
    if c == 0 {
        return Err(GradError::ZeroSize { what: "classes" });
    }
    if let Some((row, &class)) = targets.iter().enumerate().find(|&(_, &t)| t >= c) {
        return Err(GradError::ClassOutOfRange {
            row,
            class,
            classes: c,
        });
    }
    let nf = F::from_usize(n).unwrap_or_else(F::one);
    softmax_rows_into(logits, grad);
    let mut loss = F::zero();
    for ((i, row), &t) in logits.axis_iter(Axis(0)).enumerate().zip(targets) {
        let m = row.iter().fold(F::neg_infinity(), |a, &v| a.max(v));
        let lse = row.iter().fold(F::zero(), |a, &v| a + (v - m).exp()).ln();
        loss -= row[t] - m - lse;
        grad[[i, t]] -= F::one();
    }
    grad.mapv_inplace(|v| v / nf);
    Ok(loss / nf)
}
