//! Parameters and gradients listed by name (`Module`, `Gradients`), per-tensor gradient
//! norms, and the plain SGD update that pairs them up.

use std::collections::BTreeMap;

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD};
use norm_core::Float;

use crate::GradError;

/// A layer or model whose parameters can be visited by name (e.g. `blocks.3.ffn.lin2.weight`).
///
/// Names are stable and match those of the corresponding [`Gradients`].
pub trait Module<F> {
    /// Calls `f(name, view)` for every parameter, in a fixed order.
    fn visit_params(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>));
    /// Calls `f(name, view)` for every parameter, mutably, in the same order.
    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, F>));

    /// Calls `f(view)` for every parameter in the order of
    /// [`visit_params`](Self::visit_params), without building names (containers
    /// override it so that a training step allocates nothing).
    fn for_each_param(&self, f: &mut dyn FnMut(ArrayViewD<'_, F>)) {
        self.visit_params(&mut |_, v| f(v));
    }

    /// [`for_each_param`](Self::for_each_param), mutably.
    fn for_each_param_mut(&mut self, f: &mut dyn FnMut(ArrayViewMutD<'_, F>)) {
        self.visit_params_mut(&mut |_, v| f(v));
    }

    /// The parameter names, in visiting order.
    fn param_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        self.visit_params(&mut |n, _| names.push(n.to_owned()));
        names
    }

    /// Total number of scalar parameters.
    fn param_count(&self) -> usize {
        let mut n = 0;
        self.visit_params(&mut |_, v| n += v.len());
        n
    }
}

/// Gradients of a [`Module`]'s parameters, visited under the same names.
pub trait Gradients<F> {
    /// Calls `f(name, view)` for every parameter gradient, in a fixed order.
    fn visit_grads(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>));

    /// Calls `f(view)` for every gradient in the order of
    /// [`visit_grads`](Self::visit_grads), without building names.
    fn for_each_grad(&self, f: &mut dyn FnMut(ArrayViewD<'_, F>)) {
        self.visit_grads(&mut |_, v| f(v));
    }

    /// `(name, ‖grad‖₂)` for every gradient tensor, in visiting order (computed in f64).
    ///
    /// ```text
    /// ‖g‖₂ = sqrt(Σ g_i²)
    /// ```
    fn grad_norms(&self) -> Vec<(String, f64)>
    where
        F: Float,
    {
        let mut out = Vec::new();
        self.visit_grads(&mut |n, g| out.push((n.to_owned(), l2_norm(g))));
        out
    }

    /// Owned copies of every gradient, by name.
    fn to_named(&self) -> Vec<(String, ArrayD<F>)>
    where
        F: Clone,
    {
        let mut out = Vec::new();
        self.visit_grads(&mut |n, g| out.push((n.to_owned(), g.to_owned())));
        out
    }
}

/// `‖a‖₂` computed in f64 so it neither overflows nor underflows.
///
/// For element types whose squares fit f64 exactly enough (f32: any f32 squared is a
/// normal f64), one pass `sqrt(Σ a_i²)` in f64; otherwise (f64) scaled by the largest
/// magnitude:
///
/// ```text
/// ‖a‖₂ = s·sqrt(Σ (a_i/s)²),  s = max |a_i|
/// ```
///
/// # Example
/// ```
/// use ndarray::array;
/// use norm_autograd::l2_norm;
///
/// assert_eq!(l2_norm(array![3.0f32, 4.0].into_dyn().view()), 5.0);
/// let huge = l2_norm(array![3e30f32, 4e30].into_dyn().view()); // squares beyond f32
/// assert!((huge / 5e30 - 1.0).abs() < 1e-7);
/// let big = l2_norm(array![3e200f64, 4e200].into_dyn().view());
/// assert!((big / 5e200 - 1.0).abs() < 1e-15);
/// let small = l2_norm(array![3e-200f64, 4e-200].into_dyn().view());
/// assert!((small / 5e-200 - 1.0).abs() < 1e-15);
/// ```
pub fn l2_norm<F: Float>(a: ArrayViewD<'_, F>) -> f64 {
    let big = F::max_value().to_f64_exact();
    let tiny = (F::min_positive_value() * F::epsilon()).to_f64_exact(); // the smallest subnormal
    if (big * big * a.len() as f64).is_finite() && tiny * tiny >= f64::MIN_POSITIVE {
        return a
            .iter()
            .map(|v| {
                let t = v.to_f64_exact();
                t * t
            })
            .sum::<f64>()
            .sqrt();
    }
    let s = a.iter().fold(0.0f64, |m, v| m.max(v.to_f64_exact().abs()));
    if s == 0.0 || !s.is_finite() {
        return s;
    }
    s * a
        .iter()
        .map(|v| {
            let t = v.to_f64_exact() / s;
            t * t
        })
        .sum::<f64>()
        .sqrt()
}

/// Joins a prefix and a child name with a dot (`"blocks.0"` + `"ffn"`).
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Plain stochastic gradient descent: `p ← p − lr·g` for every parameter.
///
/// ```text
/// p ← p − lr · dL/dp
/// ```
///
/// # Errors
/// [`GradError::InvalidValue`] for a non-finite or non-positive `lr`;
/// [`GradError::ParamMismatch`] if a parameter has no gradient of the same name or the
/// shapes differ, or a gradient names no parameter. Nothing is updated then.
///
/// # Example
/// ```
/// use ndarray::array;
/// use norm_autograd::{sgd_step, Module, Norm, NormKind};
///
/// let mut norm = Norm::<f64>::new(NormKind::LayerNorm, 2)?;
/// let (y, cache) = norm.forward(&array![[1.0, 3.0]])?;
/// let (_, grads) = norm.backward(&cache, &y)?; // d(½‖y‖²)/dy = y
/// sgd_step(&mut norm, &grads, 0.5)?;
/// assert!(norm.weight()[0] < 1.0); // gamma shrinks towards the target 0
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
pub fn sgd_step<F: Float>(
    model: &mut impl Module<F>,
    grads: &impl Gradients<F>,
    lr: F,
) -> Result<(), GradError> {
    if !(lr.is_finite() && lr > F::zero()) {
        return Err(GradError::InvalidValue {
            what: "lr",
            value: lr.to_f64_exact(),
        });
    }
    let mut by_name: BTreeMap<String, ArrayD<F>> = BTreeMap::new();
    grads.visit_grads(&mut |n, g| {
        by_name.insert(n.to_owned(), g.to_owned());
    });
    // Validate everything first so a mismatch leaves the model untouched.
    let mut err: Option<GradError> = None;
    let mut seen = 0usize;
    model.visit_params(&mut |n, p| {
        if err.is_some() {
            return;
        }
        match by_name.get(n) {
            None => {
                err = Some(GradError::ParamMismatch {
                    name: n.to_owned(),
                    reason: "no gradient of this name".into(),
                });
            }
            Some(g) if g.shape() != p.shape() => {
                err = Some(GradError::ParamMismatch {
                    name: n.to_owned(),
                    reason: format!("gradient shape {:?}, parameter shape {:?}", g.shape(), p.shape()),
                });
            }
            Some(_) => seen += 1,
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    if seen != by_name.len() {
        let names = model.param_names();
        let extra = by_name
            .keys()
            .find(|k| !names.contains(k))
            .cloned()
            .unwrap_or_default();
        return Err(GradError::ParamMismatch {
            name: extra,
            reason: "gradient names no parameter of the model".into(),
        });
    }
    model.visit_params_mut(&mut |n, mut p| {
        if let Some(g) = by_name.get(n) {
            p.zip_mut_with(g, |pv, &gv| *pv -= lr * gv);
        }
    });
    Ok(())
}
