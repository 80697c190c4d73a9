//! Training utilities beyond plain SGD: the AdamW optimizer (bias-corrected, decoupled
//! weight decay, optional global-norm clipping) and the learning-rate [`Schedule`] (linear
//! warmup, then constant or cosine).

use ndarray::{ArrayViewD, ArrayViewMutD};
use norm_core::Float;

use crate::{GradError, Gradients, Module, l2_norm};

/// AdamW's hyper-parameters (PyTorch's defaults except `weight_decay`, which is 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Decay of the first moment β₁.
    pub beta1: f64,
    /// Decay of the second moment β₂.
    pub beta2: f64,
    /// ε added to `√v̂`.
    pub eps: f64,
    /// Decoupled weight decay λ (0 by default).
    pub weight_decay: f64,
    /// Rescale the gradient to this global norm when it is larger (`None`: no clipping).
    pub clip: Option<f64>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            clip: None,
        }
    }
}

/// AdamW (Loshchilov & Hutter 2019) with bias correction, one moment pair per parameter
/// kept across steps (allocated on the first step, reused after).
///
/// ```text
/// g ← g · min(1, c/‖g‖)                 (only with clip = Some(c); ‖g‖ over all parameters)
/// m ← β₁m + (1−β₁)g,   v ← β₂v + (1−β₂)g²
/// m̂ = m/(1−β₁ᵗ),       v̂ = v/(1−β₂ᵗ)
/// p ← p − lr·λ·p − lr·m̂/(√v̂ + ε)
/// ```
///
/// # Example
/// ```
/// use ndarray::array;
/// use norm_autograd::{AdamW, AdamWConfig, Linear, LinearGrads};
///
/// let mut lin = Linear::<f64>::from_weights(array![[1.0]], None)?;
/// let grads = LinearGrads { weight: array![[0.5]], bias: None };
/// let mut opt = AdamW::new(AdamWConfig::default())?;
/// let stats = opt.step(&mut lin, &grads, 0.1)?;
/// // The first bias-corrected step moves by lr·sign(g) (up to ε).
/// assert!((lin.weight()[[0, 0]] - 0.9).abs() < 1e-7);
/// assert_eq!(stats.grad_norm, 0.5);
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AdamW<F> {
    config: AdamWConfig,
    t: u64,
    names: Vec<String>,
    m: Vec<Vec<F>>,
    v: Vec<Vec<F>>,
}

/// What one [`AdamW::step`] saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
    /// The factor the gradient was multiplied by (1 without clipping).
    pub clip_scale: f64,
}

fn mismatch(name: &str, reason: &str) -> GradError {
    GradError::ParamMismatch {
        name: name.to_owned(),
        reason: reason.to_owned(),
    }
}

impl<F: Float> AdamW<F> {
    /// A fresh optimizer.
    ///
    /// # Errors
    /// [`GradError::InvalidValue`] for β outside `[0, 1)`, a non-positive ε, a negative
    /// weight decay, or a non-positive clip norm.
    pub fn new(config: AdamWConfig) -> Result<Self, GradError> {
        let checks = [
            ("beta1", config.beta1, (0.0..1.0).contains(&config.beta1)),
            ("beta2", config.beta2, (0.0..1.0).contains(&config.beta2)),
            ("eps", config.eps, config.eps.is_finite() && config.eps > 0.0),
            (
                "weight_decay",
                config.weight_decay,
                config.weight_decay.is_finite() && config.weight_decay >= 0.0,
            ),
            (
                "clip",
                config.clip.unwrap_or(1.0),
                config.clip.is_none_or(|c| c.is_finite() && c > 0.0),
            ),
        ];
        if let Some(&(what, value, _)) = checks.iter().find(|c| !c.2) {
            return Err(GradError::InvalidValue { what, value });
        }
        Ok(Self {
            config,
            t: 0,
            names: Vec::new(),
            m: Vec::new(),
            v: Vec::new(),
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> AdamWConfig {
        self.config
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// Checks that `model` and `grads` list the same parameters (names, sizes, order) as
    /// the optimizer state, creating the state on the first call; returns the global
    /// gradient norm. After the first call the names are not built again (that would
    /// allocate on every step): the number, order and sizes are checked.
    fn check(&mut self, model: &impl Module<F>, grads: &impl Gradients<F>) -> Result<f64, GradError> {
        if self.names.is_empty() {
            return self.check_named(model, grads);
        }
        let n = self.m.len();
        let mut bad: Option<usize> = None;
        let mut k = 0;
        model.for_each_param(&mut |p| {
            if bad.is_none() && self.m.get(k).is_none_or(|m| m.len() != p.len()) {
                bad = Some(k);
            }
            k += 1;
        });
        if bad.is_some() || k != n {
            let at = bad.unwrap_or(k.min(n.saturating_sub(1)));
            return Err(mismatch(
                self.names.get(at).map_or("", String::as_str),
                "the model's parameters changed in number or size since the first step",
            ));
        }
        let mut k = 0;
        let mut sq = 0.0;
        grads.for_each_grad(&mut |g| {
            match self.m.get(k) {
                Some(m) if bad.is_none() && m.len() == g.len() => sq += l2_norm(g).powi(2),
                _ => bad = bad.or(Some(k)),
            }
            k += 1;
        });
        if bad.is_some() || k != n {
            let at = bad.unwrap_or(k.min(n.saturating_sub(1)));
            return Err(mismatch(
                self.names.get(at).map_or("", String::as_str),
                "gradient does not match the parameter at its position",
            ));
        }
        Ok(sq.sqrt())
    }

    /// The first step's check, by name.
    fn check_named(&mut self, model: &impl Module<F>, grads: &impl Gradients<F>) -> Result<f64, GradError> {
        let mut names = Vec::new();
        let mut sizes = Vec::new();
        model.visit_params(&mut |n, p| {
            names.push(n.to_owned());
            sizes.push(p.len());
        });
        let mut err = None;
        let mut k = 0;
        let mut sq = 0.0;
        grads.visit_grads(&mut |n, g| {
            if err.is_none() {
                match names.get(k) {
                    Some(s) if s == n && sizes[k] == g.len() => sq += l2_norm(g).powi(2),
                    _ => {
                        err = Some(mismatch(
                            n,
                            "gradient does not match the parameter at its position",
                        ))
                    }
                }
            }
            k += 1;
        });
        if err.is_none() && k != names.len() {
            err = Some(mismatch("", "fewer gradients than parameters"));
        }
        if let Some(e) = err {
            return Err(e);
        }
        self.m = sizes.iter().map(|&n| vec![F::zero(); n]).collect();
        self.v = sizes.iter().map(|&n| vec![F::zero(); n]).collect();
        self.names = names;
        Ok(sq.sqrt())
    }

    /// One update of `model` with `grads` at learning rate `lr`. Nothing changes when an
    /// error is returned.
    ///
    /// # Errors
    /// [`GradError::InvalidValue`] for a negative or non-finite `lr`;
    /// [`GradError::ParamMismatch`] if the gradients or the model do not list the same
    /// parameters in the same order with the same sizes as on the first step (names are
    /// compared on the first step; later steps compare the number, order and sizes and
    /// allocate nothing).
    pub fn step(
        &mut self,
        model: &mut impl Module<F>,
        grads: &impl Gradients<F>,
        lr: f64,
    ) -> Result<StepStats, GradError> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(GradError::InvalidValue {
                what: "lr",
                value: lr,
            });
        }
        let grad_norm = self.check(model, grads)?;
        let c = self.config;
        let clip_scale = match c.clip {
            Some(max) if grad_norm > max => max / grad_norm,
            _ => 1.0,
        };
        self.t += 1;
        let t = i32::try_from(self.t).unwrap_or(i32::MAX);
        let (b1, b2) = (F::from_f64_round(c.beta1), F::from_f64_round(c.beta2));
        let (a1, a2) = (F::from_f64_round(1.0 - c.beta1), F::from_f64_round(1.0 - c.beta2));
        let scale = F::from_f64_round(clip_scale);
        let mut k = 0;
        grads.for_each_grad(&mut |g: ArrayViewD<'_, F>| {
            for ((m, v), &g) in self.m[k].iter_mut().zip(self.v[k].iter_mut()).zip(g.iter()) {
                let g = g * scale;
                *m = b1 * *m + a1 * g;
                *v = b2 * *v + a2 * g * g;
            }
            k += 1;
        });
        let inv_c1 = F::from_f64_round(1.0 / (1.0 - c.beta1.powi(t)));
        let inv_c2 = F::from_f64_round(1.0 / (1.0 - c.beta2.powi(t)));
        let (lr_f, decay, eps) = (
            F::from_f64_round(lr),
            F::from_f64_round(1.0 - lr * c.weight_decay),
            F::from_f64_round(c.eps),
        );
        let mut k = 0;
        model.for_each_param_mut(&mut |mut p: ArrayViewMutD<'_, F>| {
            for ((p, &m), &v) in p.iter_mut().zip(&self.m[k]).zip(&self.v[k]) {
                let mh = m * inv_c1;
                let vh = v * inv_c2;
                *p = *p * decay - lr_f * mh / (vh.sqrt() + eps);
            }
            k += 1;
        });
        Ok(StepStats {
            grad_norm,
            clip_scale,
        })
    }
}

/// What the learning rate does after warmup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decay {
    /// Stays at the peak.
    Constant,
    /// Cosine from the peak (at the end of warmup) to `floor · peak` at step `total`.
    Cosine {
        /// Step at which the floor is reached (and kept after).
        total: usize,
        /// Final learning rate as a fraction of the peak.
        floor: f64,
    },
}

/// Learning rate per step: linear warmup over `warmup` steps, then [`Decay`].
///
/// ```text
/// lr(s) = peak·(s+1)/W                                   s < W   (s counts from 0)
/// lr(s) = peak                                           Constant
/// lr(s) = peak·(f + (1−f)·½(1 + cos(π·(s−W)/(T−W))))      Cosine, W ≤ s < T;  peak·f after
/// ```
///
/// # Example
/// ```
/// use norm_autograd::{Decay, Schedule};
///
/// let s = Schedule { peak: 1e-3, warmup: 4, decay: Decay::Constant };
/// assert_eq!(s.lr(0), 2.5e-4);
/// assert_eq!(s.lr(3), 1e-3);
/// assert_eq!(s.lr(100), 1e-3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Warmup steps W (0: start at the peak).
    pub warmup: usize,
    /// After warmup.
    pub decay: Decay,
}

impl Schedule {
    /// The learning rate at step `s` (0-based).
    pub fn lr(&self, s: usize) -> f64 {
        if s < self.warmup {
            return self.peak * (s + 1) as f64 / self.warmup as f64;
        }
        match self.decay {
            Decay::Constant => self.peak,
            Decay::Cosine { total, floor } => {
                if s >= total || total <= self.warmup {
                    return self.peak * floor;
                }
                let frac = (s - self.warmup) as f64 / (total - self.warmup) as f64;
                self.peak * (floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos()))
            }
        }
    }
}
