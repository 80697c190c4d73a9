//! Elementwise activations (ReLU, tanh, GELU in its tanh form) with their derivatives.

use ndarray::{Array, ArrayRef, Dimension, Zip};
use norm_core::Float;

use crate::GradError;
use crate::linear::fit;

/// An elementwise activation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `y = x` (no activation).
    Identity,
    /// `y = max(x, 0)`; the derivative at 0 is taken as 0.
    Relu,
    /// `y = tanh(x)`.
    Tanh,
    /// GELU, tanh approximation (Hendrycks & Gimpel; GPT-2, BERT):
    ///
    /// ```text
    /// y = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
    /// ```
    Gelu,
}

/// What an activation forward saves: its input, and for tanh and GELU the tanh values
/// their derivatives need (so the backward computes no tanh again). Made only by
/// [`Activation::forward`].
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationCache<F, D: Dimension> {
    /// The input.
    pub x: Array<F, D>,
    /// tanh: `tanh(x)` (the output); GELU: `tanh(√(2/π)·(x + 0.044715·x³))`; `None` for
    /// the others.
    t: Option<Array<F, D>>,
    /// The activation that made the cache (`t` is used only by the same one).
    act: Activation,
}

impl<F: Float, D: Dimension> ActivationCache<F, D> {
    /// An empty cache for `act` (filled by [`Activation::forward_into`]).
    pub fn empty(act: Activation) -> Self {
        Self {
            x: Array::zeros(D::zeros(D::NDIM.unwrap_or(1))),
            t: None,
            act,
        }
    }
}

const GELU_C: f64 = 0.044_715;
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;

impl Activation {
    /// A short name (`"relu"`, `"tanh"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Gelu => "gelu",
        }
    }

    /// The activation of one value.
    pub fn apply<F: Float>(self, x: F) -> F {
        self.apply_with_tanh(x, self.tanh_of(x))
    }

    /// The tanh value the activation and its derivative are built on (tanh:
    /// `tanh(x)`, GELU: `tanh(u)`); zero for the others, which need none.
    fn tanh_of<F: Float>(self, x: F) -> F {
        match self {
            Activation::Identity | Activation::Relu => F::zero(),
            Activation::Tanh => x.tanh(),
            Activation::Gelu => {
                let (c, k) = (F::from_f64_round(GELU_C), F::from_f64_round(SQRT_2_OVER_PI));
                (k * (x + c * x * x * x)).tanh()
            }
        }
    }

    /// The activation of `x` given `t = tanh_of(x)`.
    fn apply_with_tanh<F: Float>(self, x: F, t: F) -> F {
        match self {
            Activation::Identity => x,
            Activation::Relu => x.max(F::zero()),
            Activation::Tanh => t,
            Activation::Gelu => F::from_f64_round(0.5) * x * (F::one() + t),
        }
    }

    /// The derivative `dy/dx` at `x`.
    ///
    /// ```text
    /// ReLU: [x > 0];  tanh: 1 − tanh²x;
    /// GELU: ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²)
    /// ```
    pub fn derivative<F: Float>(self, x: F) -> F {
        self.derivative_apply_with_tanh(x, self.tanh_of(x))
    }

    /// [`derivative`](Self::derivative) given `t = tanh_of(x)`.
    fn derivative_apply_with_tanh<F: Float>(self, x: F, t: F) -> F {
        match self {
            Activation::Identity => F::one(),
            Activation::Relu => {
                if x > F::zero() {
                    F::one()
                } else {
                    F::zero()
                }
            }
            Activation::Tanh => F::one() - t * t,
            Activation::Gelu => {
                let (c, k) = (F::from_f64_round(GELU_C), F::from_f64_round(SQRT_2_OVER_PI));
                let half = F::from_f64_round(0.5);
                let three = F::from_f64_round(3.0);
                half * (F::one() + t) + half * x * (F::one() - t * t) * k * (F::one() + three * c * x * x)
            }
        }
    }

    /// Applies the activation elementwise; returns the output and the cache.
    ///
    /// # Errors
    /// None today (any shape is accepted); the `Result` keeps every layer's `forward`
    /// the same shape.
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use norm_autograd::Activation;
    ///
    /// let (y, cache) = Activation::Relu.forward(&array![-1.0, 2.0])?;
    /// assert_eq!(y, array![0.0, 2.0]);
    /// let dx = Activation::Relu.backward(&cache, &array![5.0, 5.0])?;
    /// assert_eq!(dx, array![0.0, 5.0]);
    /// # Ok::<(), norm_autograd::GradError>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn forward<F: Float, D: Dimension>(
        self,
        x: &ArrayRef<F, D>,
    ) -> Result<(Array<F, D>, ActivationCache<F, D>), GradError> {
        let mut y = Array::zeros(x.raw_dim());
        let mut cache = ActivationCache::empty(self);
        self.forward_into(x, &mut y, &mut cache)?;
        Ok((y, cache))
    }

    /// [`forward`](Self::forward) into the caller's output and cache (reshaped only when
    /// the shape of `x` changes).
    ///
    /// # Errors
    /// None today (as [`forward`](Self::forward)).
    pub fn forward_into<F: Float, D: Dimension>(
        self,
        x: &ArrayRef<F, D>,
        y: &mut Array<F, D>,
        cache: &mut ActivationCache<F, D>,
    ) -> Result<(), GradError> {
        fit(&mut cache.x, x.raw_dim());
        cache.x.assign(x);
        cache.act = self;
        fit(y, x.raw_dim());
        match self {
            Activation::Identity | Activation::Relu => {
                cache.t = None;
                Zip::from(&mut *y)
                    .and(&cache.x)
                    .for_each(|y, &x| *y = self.apply(x));
            }
            Activation::Tanh | Activation::Gelu => {
                let t = cache.t.get_or_insert_with(|| Array::zeros(x.raw_dim()));
                fit(t, x.raw_dim());
                Zip::from(&mut *t)
                    .and(&cache.x)
                    .for_each(|t, &x| *t = self.tanh_of(x));
                Zip::from(&mut *y)
                    .and(&cache.x)
                    .and(&*t)
                    .for_each(|y, &x, &t| *y = self.apply_with_tanh(x, t));
            }
        }
        Ok(())
    }

    /// `dx = dy ⊙ f'(x)`.
    ///
    /// # Errors
    /// [`GradError::ShapeMismatch`] if `dy` is not shaped like the cached input.
    pub fn backward<F: Float, D: Dimension>(
        self,
        cache: &ActivationCache<F, D>,
        dy: &ArrayRef<F, D>,
    ) -> Result<Array<F, D>, GradError> {
        let mut dx = Array::zeros(cache.x.raw_dim());
        self.backward_into(cache, dy, &mut dx)?;
        Ok(dx)
    }

    /// [`backward`](Self::backward) into the caller's `dx` (reshaped only when its shape
    /// differs).
    ///
    /// # Errors
    /// As [`backward`](Self::backward).
    pub fn backward_into<F: Float, D: Dimension>(
        self,
        cache: &ActivationCache<F, D>,
        dy: &ArrayRef<F, D>,
        dx: &mut Array<F, D>,
    ) -> Result<(), GradError> {
        if dy.shape() != cache.x.shape() {
            return Err(GradError::ShapeMismatch {
                what: "dy",
                expected: cache.x.shape().to_vec(),
                got: dy.shape().to_vec(),
            });
        }
        fit(dx, cache.x.raw_dim());
        let dx = &mut *dx;
        match &cache.t {
            Some(t) if cache.act == self && t.shape() == cache.x.shape() => Zip::from(&mut *dx)
                .and(&cache.x)
                .and(t)
                .and(dy)
                .for_each(|o, &x, &t, &g| *o = g * self.derivative_apply_with_tanh(x, t)),
            // ReLU: the same product as `derivative`, without its per-element dispatch.
            _ if self == Activation::Relu => {
                Zip::from(&mut *dx).and(&cache.x).and(dy).for_each(|o, &x, &g| {
                    *o = g * if x > F::zero() { F::one() } else { F::zero() };
                })
            }
            _ => Zip::from(&mut *dx)
                .and(&cache.x)
                .and(dy)
                .for_each(|o, &x, &g| *o = g * self.derivative(x)),
        }
        Ok(())
    }
}
