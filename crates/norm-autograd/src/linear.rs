//! `Linear<F>`: the affine layer `y = x·W + b` with its backward pass, and `Init`, the
//! weight initializations (Xavier/Glorot uniform and normal, normal with a gain over
//! fan-in) drawn from an RNG the caller passes in.

use ndarray::{Array1, Array2, ArrayRef2, ArrayViewD, ArrayViewMutD};
use norm_core::Float;
use rand::{Rng, RngExt};
use rand_distr::{Distribution, StandardNormal};

use crate::gemm::{gemm_into, strided};
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

/// What [`Linear::forward`] saves: its input, and the weight transposed (so the
/// backward's `dy·Wᵀ` reads rows; it is the weight the forward used).
#[derive(Debug, Clone, PartialEq)]
pub struct LinearCache<F> {
    /// The input `x`, `(rows, in)`.
    pub x: Array2<F>,
    /// `Wᵀ`, `(out, in)`.
    wt: Array2<F>,
}

impl<F: Float> Default for LinearCache<F> {
    /// An empty cache, shaped by the first [`Linear::forward_into`].
    fn default() -> Self {
        Self {
            x: Array2::zeros((0, 0)),
            wt: Array2::zeros((0, 0)),
        }
    }
}

impl<F: Float> LinearGrads<F> {
    /// Empty gradients, shaped by the first [`Linear::backward_into`].
    pub fn empty() -> Self {
        Self {
            weight: Array2::zeros((0, 0)),
            bias: None,
        }
    }
}

/// Makes `a` a `shape` array, reallocating only when its shape differs (its contents are
/// then overwritten by the caller).
pub(crate) fn fit<A: Clone + Default, D: ndarray::Dimension>(a: &mut ndarray::Array<A, D>, shape: D) {
    if a.raw_dim() != shape {
        *a = ndarray::Array::from_elem(shape, A::default());
    }
}

/// The row-major slice of an array this crate made (standard layout by construction).
pub(crate) fn slice_of<F, D: ndarray::Dimension>(a: &ndarray::ArrayRef<F, D>) -> Result<&[F], GradError> {
    a.as_slice().ok_or(GradError::CacheMismatch {
        expected: "arrays in standard (row-major) layout",
        got: "a strided array",
    })
}

/// The mutable row-major slice of an array this crate made.
pub(crate) fn slice_mut<F, D: ndarray::Dimension>(
    a: &mut ndarray::ArrayRef<F, D>,
) -> Result<&mut [F], GradError> {
    a.as_slice_mut().ok_or(GradError::CacheMismatch {
        expected: "arrays in standard (row-major) layout",
        got: "a strided array",
    })
}

/// Gradients of a [`Linear`] layer's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearGrads<F> {
    /// dL/dW, `(in, out)`.
    pub weight: Array2<F>,
    /// dL/db, `(out)`, when the layer has a bias.
    pub bias: Option<Array1<F>>,
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
        let (mut y, mut cache) = (Array2::zeros((0, 0)), LinearCache::default());
        self.forward_into(x, &mut y, &mut cache)?;
        Ok((y, cache))
    }

    /// [`forward`](Self::forward) into the caller's output and cache, which are reshaped
    /// only when the shape of `x` changes (so repeated calls allocate nothing).
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    pub fn forward_into(
        &self,
        x: &ArrayRef2<F>,
        y: &mut Array2<F>,
        cache: &mut LinearCache<F>,
    ) -> Result<(), GradError> {
        if x.ncols() != self.in_dim() {
            return Err(GradError::MatMul {
                what: "x · weight",
                left: x.shape().to_vec(),
                right: self.weight.shape().to_vec(),
            });
        }
        let (rows, n_in, n_out) = (x.nrows(), self.in_dim(), self.out_dim());
        fit(&mut cache.x, ndarray::Ix2(rows, n_in));
        cache.x.assign(x);
        fit(&mut cache.wt, ndarray::Ix2(n_out, n_in));
        cache.wt.assign(&self.weight.t());
        fit(y, ndarray::Ix2(rows, n_out));
        let xs = slice_of(&cache.x)?;
        gemm_into(
            rows,
            n_out,
            n_in,
            strided(xs, n_in, false),
            slice_of(&self.weight)?,
            n_out,
            slice_mut(y)?,
        );
        if let Some(b) = &self.bias {
            *y += b;
        }
        Ok(())
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
        let (mut dx, mut grads) = (Array2::zeros((0, 0)), LinearGrads::empty());
        self.backward_into(cache, dy, &mut dx, &mut grads)?;
        Ok((dx, grads))
    }

    /// [`backward`](Self::backward) into the caller's `dx` and gradients (reshaped only
    /// when their shapes differ).
    ///
    /// # Errors
    /// As [`backward`](Self::backward).
    pub fn backward_into(
        &self,
        cache: &LinearCache<F>,
        dy: &ArrayRef2<F>,
        dx: &mut Array2<F>,
        grads: &mut LinearGrads<F>,
    ) -> Result<(), GradError> {
        let (n_in, n_out) = (self.in_dim(), self.out_dim());
        if cache.x.ncols() != n_in {
            return Err(GradError::ShapeMismatch {
                what: "cache.x",
                expected: vec![cache.x.nrows(), n_in],
                got: cache.x.shape().to_vec(),
            });
        }
        if cache.wt.dim() != (n_out, n_in) {
            return Err(GradError::ShapeMismatch {
                what: "cache.wt",
                expected: vec![n_out, n_in],
                got: cache.wt.shape().to_vec(),
            });
        }
        let rows = cache.x.nrows();
        let expected = [rows, n_out];
        if dy.shape() != expected {
            return Err(GradError::ShapeMismatch {
                what: "dy",
                expected: expected.to_vec(),
                got: dy.shape().to_vec(),
            });
        }
        let dy = dy.as_standard_layout();
        let dys = slice_of(&dy)?;
        fit(dx, ndarray::Ix2(rows, n_in));
        gemm_into(
            rows,
            n_in,
            n_out,
            strided(dys, n_out, false),
            slice_of(&cache.wt)?,
            n_in,
            slice_mut(dx)?,
        );
        fit(&mut grads.weight, ndarray::Ix2(n_in, n_out));
        let xs = slice_of(&cache.x)?;
        gemm_into(
            n_in,
            n_out,
            rows,
            strided(xs, n_in, true),
            dys,
            n_out,
            slice_mut(&mut grads.weight)?,
        );
        match &self.bias {
            Some(_) => {
                let db = grads.bias.get_or_insert_with(|| Array1::zeros(n_out));
                fit(db, ndarray::Ix1(n_out));
                db.fill(F::zero());
                for row in dy.rows() {
                    *db += &row;
                }
            }
            None => grads.bias = None,
        }
        Ok(())
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
