//! `FeedForward<F>`: the position-wise `Linear → activation → Linear` sublayer of a
//! transformer block, over `(B, L, D)` sequences.

use ndarray::{Array2, Array3, ArrayRef3, ArrayViewD, ArrayViewMutD, CowArray, Ix2, Ix3};
use norm_core::Float;
use rand::Rng;

use crate::activation::ActivationCache;
use crate::linear::{fit, slice_mut, slice_of};
use crate::params::join;
use crate::seq::seq_layer;
use crate::{Activation, GradError, Gradients, Init, Linear, LinearCache, LinearGrads, Module};

/// Position-wise feed-forward network.
///
/// ```text
/// y = act(x·W_1 + b_1)·W_2 + b_2        W_1: (D, D_ff), W_2: (D_ff, D)
/// ```
///
/// Parameters: `lin1.weight`, `lin1.bias`, `lin2.weight`, `lin2.bias`.
///
/// # Example
/// ```
/// use ndarray::Array3;
/// use rand::SeedableRng;
/// use norm_autograd::{Activation, FeedForward, Init};
///
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let ffn = FeedForward::<f32>::new(8, 32, Activation::Relu, Init::XavierUniform { gain: 1.0 }, &mut rng)?;
/// let (y, cache) = ffn.forward(&Array3::<f32>::ones((2, 3, 8)))?;
/// let (dx, grads) = ffn.backward(&cache, &y)?;
/// assert_eq!((dx.dim(), grads.lin2.weight.dim()), ((2, 3, 8), (32, 8)));
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FeedForward<F> {
    /// The expanding map `(D, D_ff)`.
    pub lin1: Linear<F>,
    /// The activation between the two maps.
    pub activation: Activation,
    /// The contracting map `(D_ff, D)`.
    pub lin2: Linear<F>,
}

/// What [`FeedForward::forward`] saves, and the buffers its `_into` forms reuse.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedForwardCache<F> {
    saved: FeedForwardSaved<F>,
    scratch: FeedForwardScratch<F>,
}

/// What the forward writes: the sublayers' caches, the batch shape, and its
/// intermediates `z = x·W₁ + b₁`, `a = act(z)`, `y` as `(B·L, ·)`. The backward only
/// reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FeedForwardSaved<F> {
    lin1: LinearCache<F>,
    act: ActivationCache<F, Ix2>,
    lin2: LinearCache<F>,
    shape: (usize, usize),
    z: Array2<F>,
    a: Array2<F>,
    y: Array2<F>,
}

/// The backward's intermediate gradients `da`, `dz`, `dx` as `(B·L, ·)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FeedForwardScratch<F> {
    da: Array2<F>,
    dz: Array2<F>,
    dx: Array2<F>,
}

impl<F: Float> Default for FeedForwardCache<F> {
    fn default() -> Self {
        Self {
            saved: FeedForwardSaved::default(),
            scratch: FeedForwardScratch::default(),
        }
    }
}

impl<F: Float> Default for FeedForwardSaved<F> {
    fn default() -> Self {
        let e = || Array2::zeros((0, 0));
        Self {
            lin1: LinearCache::default(),
            act: ActivationCache::empty(Activation::Identity),
            lin2: LinearCache::default(),
            shape: (0, 0),
            z: e(),
            a: e(),
            y: e(),
        }
    }
}

impl<F: Float> Default for FeedForwardScratch<F> {
    fn default() -> Self {
        let e = || Array2::zeros((0, 0));
        Self {
            da: e(),
            dz: e(),
            dx: e(),
        }
    }
}

impl<F: Float> FeedForwardGrads<F> {
    /// Empty gradients (filled by [`FeedForward::backward_into`]).
    pub fn empty() -> Self {
        Self {
            lin1: LinearGrads::empty(),
            lin2: LinearGrads::empty(),
        }
    }
}

/// `(B, L, D)` as a `(B·L, D)` view (a copy only when `x` is not in standard layout).
pub(crate) fn rows_of<F: Float>(x: &ArrayRef3<F>) -> Result<CowArray<'_, F, Ix2>, GradError> {
    let (b, l, d) = x.dim();
    x.to_shape((b * l, d)).map_err(|_| GradError::ShapeMismatch {
        what: "activations",
        expected: vec![b * l, d],
        got: vec![b, l, d],
    })
}

/// Copies `(B·L, D)` rows into a `(B, L, D)` array (reshaped only when its shape differs).
pub(crate) fn copy_rows_into<F: Float>(
    src: &Array2<F>,
    b: usize,
    l: usize,
    dst: &mut Array3<F>,
) -> Result<(), GradError> {
    fit(dst, Ix3(b, l, src.ncols()));
    slice_mut(dst)?.copy_from_slice(slice_of(src)?);
    Ok(())
}

/// Gradients of a [`FeedForward`]'s parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedForwardGrads<F> {
    /// Of the first (expanding) map.
    pub lin1: LinearGrads<F>,
    /// Of the second (contracting) map.
    pub lin2: LinearGrads<F>,
}

impl<F: Float> FeedForward<F> {
    /// `d_model → d_ff → d_model` with biases, both maps drawn from `init`.
    ///
    /// # Errors
    /// The errors of [`Init::sample`] (a zero width).
    pub fn new<R: Rng + ?Sized>(
        d_model: usize,
        d_ff: usize,
        activation: Activation,
        init: Init,
        rng: &mut R,
    ) -> Result<Self, GradError> {
        Ok(Self {
            lin1: Linear::new(d_model, d_ff, true, init, rng)?,
            activation,
            lin2: Linear::new(d_ff, d_model, true, init, rng)?,
        })
    }

    /// The forward, writing the cache's saved half only (a container keeps its parts'
    /// halves apart).
    pub(crate) fn forward_saved(
        &self,
        x: &ArrayRef3<F>,
        y: &mut Array3<F>,
        c: &mut FeedForwardSaved<F>,
    ) -> Result<(), GradError> {
        let (b, l, _) = x.dim();
        self.lin1.forward_into(&rows_of(x)?, &mut c.z, &mut c.lin1)?;
        self.activation.forward_into(&c.z, &mut c.a, &mut c.act)?;
        self.lin2.forward_into(&c.a, &mut c.y, &mut c.lin2)?;
        c.shape = (b, l);
        copy_rows_into(&c.y, b, l, y)
    }
}

seq_layer!(
    FeedForward,
    FeedForwardCache,
    FeedForwardGrads,
    forward:
    /// Applies the network at every position of `x` (`(B, L, D)`).
    ///
    /// # Errors
    /// [`GradError::MatMul`] if the last axis is not `D`.
    backward:
    /// Backward of [`forward`](Self::forward) from `dy` (`(B, L, D)`).
    ///
    /// # Errors
    /// [`GradError::ShapeMismatch`] if `dy` does not match the cached forward.
);

impl<F: Float> FeedForward<F> {
    /// The backward reading the saved forward `c`, with the intermediate gradients in `s`.
    pub(crate) fn backward_with(
        &self,
        c: &FeedForwardSaved<F>,
        s: &mut FeedForwardScratch<F>,
        dy: &ArrayRef3<F>,
        dx: &mut Array3<F>,
        grads: &mut FeedForwardGrads<F>,
    ) -> Result<(), GradError> {
        let (b, l) = c.shape;
        self.lin2
            .backward_into(&c.lin2, &rows_of(dy)?, &mut s.da, &mut grads.lin2)?;
        self.activation.backward_into(&c.act, &s.da, &mut s.dz)?;
        self.lin1
            .backward_into(&c.lin1, &s.dz, &mut s.dx, &mut grads.lin1)?;
        copy_rows_into(&s.dx, b, l, dx)
    }
}

impl<F: Float> Module<F> for FeedForward<F> {
    fn for_each_param(&self, f: &mut dyn FnMut(ArrayViewD<'_, F>)) {
        self.lin1.for_each_param(f);
        self.lin2.for_each_param(f);
    }

    fn for_each_param_mut(&mut self, f: &mut dyn FnMut(ArrayViewMutD<'_, F>)) {
        self.lin1.for_each_param_mut(f);
        self.lin2.for_each_param_mut(f);
    }

    fn visit_params(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        self.lin1.visit_params(&mut |n, v| f(&join("lin1", n), v));
        self.lin2.visit_params(&mut |n, v| f(&join("lin2", n), v));
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, F>)) {
        self.lin1.visit_params_mut(&mut |n, v| f(&join("lin1", n), v));
        self.lin2.visit_params_mut(&mut |n, v| f(&join("lin2", n), v));
    }
}

impl<F: Float> Gradients<F> for FeedForwardGrads<F> {
    fn for_each_grad(&self, f: &mut dyn FnMut(ArrayViewD<'_, F>)) {
        self.lin1.for_each_grad(f);
        self.lin2.for_each_grad(f);
    }

    fn visit_grads(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        self.lin1.visit_grads(&mut |n, v| f(&join("lin1", n), v));
        self.lin2.visit_grads(&mut |n, v| f(&join("lin2", n), v));
    }
}
