//! `Linear<F>`: the affine layer `y = x·W + b` with its backward pass, and `Init`, the
//! weight initializations (Xavier/Glorot uniform and normal, normal with a gain over
//! fan-in) drawn from an RNG the caller passes in.

use ndarray::{Array1, Array2, ArrayRef2, ArrayViewD, ArrayViewMutD, Axis};
use norm_core::Float;
use rand::{Rng, RngExt};
use rand_distr::{Distribution, StandardNormal};

use crate::{GradError, Gradients, Module};

/// How a weight matrix of shape `(fan_in, fan_out)` is initialized. Biases start at 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Xavier/Glorot uniform (Glorot & Bengio 2010), PyTorch's `xavier_uniform_`:
    ///
    /// ```text
    /// W ~ U(−a, a),  a = gain·sqrt(6 / (fan_in + fan_out))
    /// ```
    XavierUniform {
        /// Multiplier of the bound (1 for linear/tanh-agnostic use).
        gain: f64,
    },
    /// Xavier/Glorot normal, PyTorch's `xavier_normal_`:
    ///
    /// ```text
    /// W ~ N(0, σ²),  σ = gain·sqrt(2 / (fan_in + fan_out))
    /// ```
    XavierNormal {
        /// Multiplier of the standard deviation.
        gain: f64,
    },
    /// Normal with a gain over fan-in (LeCun for gain 1, He/Kaiming for gain √2):
    ///
    /// ```text
    /// W ~ N(0, σ²),  σ = gain / sqrt(fan_in)
    /// ```
    Normal {
        /// Multiplier of the standard deviation.
        gain: f64,
    },
}

impl Init {
    fn gain(self) -> f64 {
        match self {
            Init::XavierUniform { gain } | Init::XavierNormal { gain } | Init::Normal { gain } => gain,
        }
    }

    /// The same initialization with its gain multiplied by `factor` (DeepNorm's β).
    #[must_use]
    pub fn scaled(self, factor: f64) -> Init {
        match self {
            Init::XavierUniform { gain } => Init::XavierUniform { gain: gain * factor },
            Init::XavierNormal { gain } => Init::XavierNormal { gain: gain * factor },
            Init::Normal { gain } => Init::Normal { gain: gain * factor },
        }
    }

    /// A `(fan_in, fan_out)` matrix drawn from this initialization.
    ///
    /// # Errors
    /// [`GradError::ZeroSize`] if a fan is 0, [`GradError::InvalidValue`] if the gain is
    /// negative or not finite (0 is allowed: an all-zero matrix).
    pub fn sample<F: Float, R: Rng + ?Sized>(
        self,
        fan_in: usize,
        fan_out: usize,
        rng: &mut R,
    ) -> Result<Array2<F>, GradError> {
        if fan_in == 0 {
            return Err(GradError::ZeroSize { what: "fan_in" });
        }
        if fan_out == 0 {
            return Err(GradError::ZeroSize { what: "fan_out" });
        }
        let gain = self.gain();
        if !(gain.is_finite() && gain >= 0.0) {
            return Err(GradError::InvalidValue {
                what: "gain",
                value: gain,
            });
        }
        let (fi, fo) = (fan_in as f64, fan_out as f64);
        // Row-major order of draws: the same seed gives the same matrix.
        Ok(match self {
            Init::XavierUniform { .. } => {
                let a = gain * (6.0 / (fi + fo)).sqrt();
                Array2::from_shape_simple_fn((fan_in, fan_out), || {
                    F::from_f64_round(a * (2.0 * rng.random::<f64>() - 1.0))
                })
            }
            Init::XavierNormal { .. } | Init::Normal { .. } => {
                let std = match self {
                    Init::XavierNormal { .. } => gain * (2.0 / (fi + fo)).sqrt(),
                    _ => gain / fi.sqrt(),
                };
                Array2::from_shape_simple_fn((fan_in, fan_out), || {
                    let z: f64 = StandardNormal.sample(rng);
                    F::from_f64_round(std * z)
                })
            }
        })
    }
}

/// A fully connected layer over the last axis of a `(rows, in)` matrix.
///
/// ```text
/// y = x·W + b        W: (in, out), b: (out)
/// dx = dy·Wᵀ,  dW = xᵀ·dy,  db = Σ_rows dy
/// ```
///
/// The weight is stored `(in, out)` (the transpose of PyTorch's `(out, in)`), so the
/// forward is a plain `x.dot(W)`. Parameters: `weight` and, if present, `bias`.
///
/// # Example
/// ```
/// use ndarray::Array2;
/// use rand::SeedableRng;
/// use norm_autograd::{Init, Linear};
///
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
/// let lin = Linear::<f64>::new(16, 4, true, Init::XavierUniform { gain: 1.0 }, &mut rng)?;
/// let x = Array2::<f64>::ones((8, 16));
/// let (y, cache) = lin.forward(&x)?;
/// let (dx, grads) = lin.backward(&cache, &Array2::ones((8, 4)))?;
/// assert_eq!((y.dim(), dx.dim(), grads.weight.dim()), ((8, 4), (8, 16), (16, 4)));
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Linear<F> {
    weight: Array2<F>,
    bias: Option<Array1<F>>,
}

/// What [`Linear::forward`] saves: its input.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearCache<F> {
    /// The input `x`, `(rows, in)`.
    pub x: Array2<F>,
}

/// Gradients of a [`Linear`] layer's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearGrads<F> {
    /// dL/dW, `(in, out)`.
    pub weight: Array2<F>,
    /// dL/db, `(out)`, when the layer has a bias.
    pub bias: Option<Array1<F>>,
}

/// Checks `a · b` and returns the product.
pub(crate) fn matmul<F: Float>(
    what: &'static str,
    a: &ArrayRef2<F>,
    b: &ArrayRef2<F>,
) -> Result<Array2<F>, GradError> {
    if a.ncols() != b.nrows() {
        return Err(GradError::MatMul {
            what,
            left: a.shape().to_vec(),
            right: b.shape().to_vec(),
        });
    }
    Ok(a.dot(b))
}

impl<F: Float> Linear<F> {
    /// A layer `in_dim → out_dim` with weights drawn from `init` using `rng` (bias 0).
    ///
    /// # Errors
    /// As [`Init::sample`].
    pub fn new<R: Rng + ?Sized>(
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        init: Init,
        rng: &mut R,
    ) -> Result<Self, GradError> {
        Ok(Self {
            weight: init.sample(in_dim, out_dim, rng)?,
            bias: bias.then(|| Array1::zeros(out_dim)),
        })
    }

    /// A layer from a given `(in, out)` weight and optional `(out)` bias.
    ///
    /// # Errors
    /// [`GradError::ZeroSize`] for an empty weight; [`GradError::ShapeMismatch`] if the
    /// bias length differs from the weight's column count.
    pub fn from_weights(weight: Array2<F>, bias: Option<Array1<F>>) -> Result<Self, GradError> {
        if weight.is_empty() {
            return Err(GradError::ZeroSize { what: "weight" });
        }
        if let Some(b) = &bias
            && b.len() != weight.ncols()
        {
            return Err(GradError::ShapeMismatch {
                what: "bias",
                expected: vec![weight.ncols()],
                got: vec![b.len()],
            });
        }
        Ok(Self { weight, bias })
    }

    /// Input features.
    pub fn in_dim(&self) -> usize {
        self.weight.nrows()
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.weight.ncols()
    }

    /// The weight, `(in, out)`.
    pub fn weight(&self) -> &Array2<F> {
        &self.weight
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Array1<F>> {
        self.bias.as_ref()
    }

    /// `y = x·W + b` for `x` of shape `(rows, in)`.
    ///
    /// # Errors
    /// [`GradError::MatMul`] if `x` does not have `in` columns.
    pub fn forward(&self, x: &ArrayRef2<F>) -> Result<(Array2<F>, LinearCache<F>), GradError> {
        let mut y = matmul("x · weight", x, &self.weight)?;
        if let Some(b) = &self.bias {
            y += b;
        }
        Ok((y, LinearCache { x: x.to_owned() }))
    }

    /// `dx = dy·Wᵀ`, `dW = xᵀ·dy`, `db = Σ_rows dy`.
    ///
    /// # Errors
    /// [`GradError::ShapeMismatch`] if `dy` is not `(rows, out)` for the cached input, or
    /// the cache was made by a layer with another input width.
    pub fn backward(
        &self,
        cache: &LinearCache<F>,
        dy: &ArrayRef2<F>,
    ) -> Result<(Array2<F>, LinearGrads<F>), GradError> {
        if cache.x.ncols() != self.in_dim() {
            return Err(GradError::ShapeMismatch {
                what: "cache.x",
                expected: vec![cache.x.nrows(), self.in_dim()],
                got: cache.x.shape().to_vec(),
            });
        }
        let expected = [cache.x.nrows(), self.out_dim()];
        if dy.shape() != expected {
            return Err(GradError::ShapeMismatch {
                what: "dy",
                expected: expected.to_vec(),
                got: dy.shape().to_vec(),
            });
        }
        let dx = matmul("dy · weightᵀ", dy, &self.weight.t())?;
        let dw = matmul("xᵀ · dy", &cache.x.t(), dy)?;
        let db = self.bias.as_ref().map(|_| dy.sum_axis(Axis(0)));
        Ok((dx, LinearGrads { weight: dw, bias: db }))
    }
}

impl<F: Float> Module<F> for Linear<F> {
    fn visit_params(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        f("weight", self.weight.view().into_dyn());
        if let Some(b) = &self.bias {
            f("bias", b.view().into_dyn());
        }
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, F>)) {
        f("weight", self.weight.view_mut().into_dyn());
        if let Some(b) = &mut self.bias {
            f("bias", b.view_mut().into_dyn());
        }
    }
}

impl<F: Float> Gradients<F> for LinearGrads<F> {
    fn visit_grads(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        f("weight", self.weight.view().into_dyn());
        if let Some(b) = &self.bias {
            f("bias", b.view().into_dyn());
        }
    }
}
