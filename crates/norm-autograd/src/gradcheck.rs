//! The gradient checker: central finite differences in f64 (the fourth-order five-point
//! stencil) for an input array or every parameter of a [`Module`], compared with an
//! analytic gradient and reported as the worst relative error.

use ndarray::{Array, ArrayRef, Dimension};

use crate::{GradError, Gradients, Module};

/// The outcome of a gradient check: the worst relative error and where it occurred.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCheck {
    /// The largest relative error over all checked entries (0 when nothing was checked).
    pub max_rel_error: f64,
    /// `name[flat index]` of the worst entry.
    pub worst: String,
    /// The analytic and numeric values at the worst entry.
    pub worst_values: (f64, f64),
    /// Number of entries checked.
    pub checked: usize,
}

impl GradCheck {
    fn empty() -> Self {
        Self {
            max_rel_error: 0.0,
            worst: String::new(),
            worst_values: (0.0, 0.0),
            checked: 0,
        }
    }

    /// The combined report of two checks (the worse entry wins).
    #[must_use]
    pub fn merge(self, other: GradCheck) -> GradCheck {
        let checked = self.checked + other.checked;
        let mut w = if other.max_rel_error > self.max_rel_error {
            other
        } else {
            self
        };
        w.checked = checked;
        w
    }
}

/// Finite-difference gradient checker in f64.
///
/// Each entry `v` is perturbed by `h = step·max(1, |v|)` (and `h/4`, `h/16`, keeping the
/// estimate whose successive difference is smaller) and the derivative estimated with the
/// five-point central stencil (error O(h⁴)):
///
/// ```text
/// f'(v) ≈ (f(v−2h) − 8 f(v−h) + 8 f(v+h) − f(v+2h)) / (12 h)
/// ```
///
/// The relative error of an entry is
///
/// ```text
/// |a − n| / max(|a|, |n|, 1e-3 · s, 1e-3 · max(1, |L|)),
///     s = max over the tensor of max(|a|, |n|),  L = the loss at the unperturbed point
/// ```
///
/// so entries whose gradient is a thousand times smaller than the tensor's largest are
/// judged against that scale, and gradients that are exactly zero (LayerNorm over two
/// features with eps = 0, say) against 1e-3·|L|: the finite-difference estimate carries
/// rounding noise of about 3·2⁻⁵²·|L|/h ≈ 1e-11·|L| at the smaller steps, and up to
/// 1e-10·|L| where intermediate values exceed the loss (an attention key bias, whose
/// exact gradient is 0 by softmax's shift invariance, measured −1.05e-10 at |L| ≈ 1; the
/// proptest seed is kept in tests/transformer.proptest-regressions), so below that floor
/// a relative error of 1e-6 would measure the noise, not the code under test. Such entries
/// are in effect checked to an absolute 1e-9·|L|.
///
/// # Example
/// ```
/// use ndarray::array;
/// use norm_autograd::GradChecker;
///
/// let x = array![1.0, -2.0, 0.5];
/// let analytic = x.mapv(|v: f64| 3.0 * v * v); // d/dx Σ x³
/// let report = GradChecker::default().check_input(&x, &analytic, |x| Ok(x.mapv(|v| v.powi(3)).sum()))?;
/// assert!(report.max_rel_error < 1e-9);
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradChecker {
    /// Relative step size (default 1e-4).
    pub step: f64,
}

impl Default for GradChecker {
    fn default() -> Self {
        Self { step: 1e-4 }
    }
}

impl GradChecker {
    fn h(&self, v: f64) -> f64 {
        self.step * v.abs().max(1.0)
    }

    /// Five-point derivative of `eval` at `v`, where `eval(t)` evaluates the loss with the
    /// entry set to `t`.
    ///
    /// Estimates at `h`, `h/4` and `h/16`; the successive differences measure the
    /// truncation error. The `h/4` estimate is returned when it agrees with the `h` one
    /// within rounding noise or better than the `h/16` one does; else the `h/16` one.
    /// Near-singular points (a norm over a row close to zero) have large high derivatives,
    /// and there the smaller steps win; elsewhere `h/4` keeps the rounding noise low.
    fn derivative(
        &self,
        v: f64,
        mut eval: impl FnMut(f64) -> Result<f64, GradError>,
    ) -> Result<f64, GradError> {
        let mut est = [0.0; 3];
        let mut noise = [0.0; 3];
        for (k, (e, nz)) in est.iter_mut().zip(noise.iter_mut()).enumerate() {
            let h = self.h(v) / 4f64.powi(k as i32);
            let fm2 = eval(v - 2.0 * h)?;
            let fm1 = eval(v - h)?;
            let fp1 = eval(v + h)?;
            let fp2 = eval(v + 2.0 * h)?;
            *e = (fm2 - 8.0 * fm1 + 8.0 * fp1 - fp2) / (12.0 * h);
            // Rounding noise of the stencil: 18 ulps-ish of the loss over 12h, doubled.
            let fmax = fm2.abs().max(fm1.abs()).max(fp1.abs()).max(fp2.abs());
            *nz = 3.0 * f64::EPSILON * fmax / h;
        }
        let d01 = (est[0] - est[1]).abs();
        Ok(if d01 <= noise[0] + noise[1] || d01 <= (est[1] - est[2]).abs() {
            est[1]
        } else {
            est[2]
        })
    }

    fn validate(&self) -> Result<(), GradError> {
        if self.step.is_finite() && self.step > 0.0 {
            Ok(())
        } else {
            Err(GradError::InvalidValue {
                what: "step",
                value: self.step,
            })
        }
    }

    /// The numerical gradient of `f` at `x`, entry by entry.
    ///
    /// # Errors
    /// [`GradError::InvalidValue`] for a bad step; any error `f` returns.
    pub fn numerical_gradient<D: Dimension>(
        &self,
        x: &ArrayRef<f64, D>,
        mut f: impl FnMut(&Array<f64, D>) -> Result<f64, GradError>,
    ) -> Result<Array<f64, D>, GradError> {
        self.validate()?;
        let mut xp = x.to_owned();
        let mut grad = Array::zeros(x.raw_dim());
        for (k, g) in grad.iter_mut().enumerate() {
            let v = x.iter().nth(k).copied().unwrap_or(0.0);
            *g = self.derivative(v, |t| {
                if let Some(e) = xp.iter_mut().nth(k) {
                    *e = t;
                }
                f(&xp)
            })?;
            if let Some(e) = xp.iter_mut().nth(k) {
                *e = v;
            }
        }
        Ok(grad)
    }

    /// Checks `analytic` = dL/dx against finite differences of `f` at `x`.
    ///
    /// # Errors
    /// [`GradError::ShapeMismatch`] if `analytic` is not shaped like `x`; any error of
    /// [`numerical_gradient`](Self::numerical_gradient).
    pub fn check_input<D: Dimension>(
        &self,
        x: &ArrayRef<f64, D>,
        analytic: &ArrayRef<f64, D>,
        mut f: impl FnMut(&Array<f64, D>) -> Result<f64, GradError>,
    ) -> Result<GradCheck, GradError> {
        if analytic.shape() != x.shape() {
            return Err(GradError::ShapeMismatch {
                what: "analytic gradient",
                expected: x.shape().to_vec(),
                got: analytic.shape().to_vec(),
            });
        }
        let l0 = f(&x.to_owned())?;
        let numeric = self.numerical_gradient(x, &mut f)?;
        Ok(compare(
            "input",
            l0,
            analytic.iter().copied(),
            numeric.iter().copied(),
        ))
    }

    /// Checks every parameter gradient in `grads` against finite differences of `loss`,
    /// perturbing `model`'s parameters one entry at a time (and restoring them).
    ///
    /// # Errors
    /// [`GradError::ParamMismatch`] if a parameter has no gradient of the same name and
    /// shape; any error `loss` returns.
    pub fn check_params<M: Module<f64>>(
        &self,
        model: &mut M,
        grads: &impl Gradients<f64>,
        mut loss: impl FnMut(&M) -> Result<f64, GradError>,
    ) -> Result<GradCheck, GradError> {
        self.validate()?;
        let analytic = grads.to_named();
        let mut shapes = Vec::new();
        model.visit_params(&mut |n, p| shapes.push((n.to_owned(), p.shape().to_vec(), p.to_owned())));
        let l0 = loss(model)?;
        let mut report = GradCheck::empty();
        for (name, shape, values) in shapes {
            let Some((_, a)) = analytic.iter().find(|(n, _)| *n == name) else {
                return Err(GradError::ParamMismatch {
                    name,
                    reason: "no gradient of this name".into(),
                });
            };
            if a.shape() != shape.as_slice() {
                return Err(GradError::ParamMismatch {
                    name,
                    reason: format!("gradient shape {:?}, parameter shape {shape:?}", a.shape()),
                });
            }
            let mut numeric = Vec::with_capacity(values.len());
            for (k, &v) in values.iter().enumerate() {
                let d = self.derivative(v, |t| {
                    set_param(model, &name, k, t);
                    loss(model)
                });
                set_param(model, &name, k, v);
                numeric.push(d?);
            }
            report = report.merge(compare(&name, l0, a.iter().copied(), numeric.into_iter()));
        }
        Ok(report)
    }
}

/// Sets entry `k` (logical order) of parameter `name` to `t`.
fn set_param<M: Module<f64>>(model: &mut M, name: &str, k: usize, t: f64) {
    model.visit_params_mut(&mut |n, mut p| {
        if n == name
            && let Some(e) = p.iter_mut().nth(k)
        {
            *e = t;
        }
    });
}

/// Absolute floor of the relative-error denominator (see [`GradChecker`]).
const LOSS_FLOOR: f64 = 1e-3;

/// Worst relative error between two equally long sequences (see [`GradChecker`]).
fn compare(
    name: &str,
    loss: f64,
    analytic: impl Iterator<Item = f64>,
    numeric: impl Iterator<Item = f64>,
) -> GradCheck {
    let pairs: Vec<(f64, f64)> = analytic.zip(numeric).collect();
    let scale = pairs
        .iter()
        .fold(0.0f64, |s, &(a, n)| s.max(a.abs()).max(n.abs()));
    let floor = (1e-3 * scale).max(LOSS_FLOOR * loss.abs().max(1.0));
    let mut report = GradCheck::empty();
    report.checked = pairs.len();
    for (k, &(a, n)) in pairs.iter().enumerate() {
        let rel = (a - n).abs() / a.abs().max(n.abs()).max(floor);
        // NaN compares false: make it the worst.
        if rel > report.max_rel_error || rel.is_nan() {
            report.max_rel_error = if rel.is_nan() { f64::INFINITY } else { rel };
            report.worst = format!("{name}[{k}]");
            report.worst_values = (a, n);
        }
    }
    report
}
