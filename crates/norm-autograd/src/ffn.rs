//! `FeedForward<F>`: the position-wise `Linear → activation → Linear` sublayer of a
//! transformer block, over `(B, L, D)` sequences.

use ndarray::{Array3, ArrayRef3, ArrayViewD, ArrayViewMutD, Ix2};
use norm_core::Float;
use rand::Rng;

use crate::activation::ActivationCache;
use crate::attention::{flatten3, unflatten3};
use crate::params::join;
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

/// What [`FeedForward::forward`] saves.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedForwardCache<F> {
    lin1: LinearCache<F>,
    act: ActivationCache<F, Ix2>,
    lin2: LinearCache<F>,
    shape: (usize, usize),
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

    /// Applies the network at every position of `x` (`(B, L, D)`).
    ///
    /// # Errors
    /// [`GradError::MatMul`] if the last axis is not `D`.
    pub fn forward(&self, x: &ArrayRef3<F>) -> Result<(Array3<F>, FeedForwardCache<F>), GradError> {
        let (b, l, _) = x.dim();
        let (z, lin1) = self.lin1.forward(&flatten3(x)?)?;
        let (a, act) = self.activation.forward(&z)?;
        let (y, lin2) = self.lin2.forward(&a)?;
        Ok((
            unflatten3(y, b, l)?,
            FeedForwardCache {
                lin1,
                act,
                lin2,
                shape: (b, l),
            },
        ))
    }

    /// Backward of [`forward`](Self::forward) from `dy` (`(B, L, D)`).
    ///
    /// # Errors
    /// [`GradError::ShapeMismatch`] if `dy` does not match the cached forward.
    pub fn backward(
        &self,
        cache: &FeedForwardCache<F>,
        dy: &ArrayRef3<F>,
    ) -> Result<(Array3<F>, FeedForwardGrads<F>), GradError> {
        let (b, l) = cache.shape;
        let (da, lin2) = self.lin2.backward(&cache.lin2, &flatten3(dy)?)?;
        let dz = self.activation.backward(&cache.act, &da)?;
        let (dx, lin1) = self.lin1.backward(&cache.lin1, &dz)?;
        Ok((unflatten3(dx, b, l)?, FeedForwardGrads { lin1, lin2 }))
    }
}

impl<F: Float> Module<F> for FeedForward<F> {
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
    fn visit_grads(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        self.lin1.visit_grads(&mut |n, v| f(&join("lin1", n), v));
        self.lin2.visit_grads(&mut |n, v| f(&join("lin2", n), v));
    }
}
