//! `Mlp<F>`: a deep stack of `Linear → (Norm) → activation` layers, with a backward
//! that reports the gradient reaching every layer's output (for gradient-flow studies).

use ndarray::{Array2, ArrayRef2, ArrayViewD, ArrayViewMutD};
use norm_core::Float;
use rand::Rng;

use crate::activation::ActivationCache;
use crate::params::join;
use crate::{
    Activation, GradError, Gradients, Init, Linear, LinearCache, LinearGrads, Module, Norm, NormCache,
    NormGrads, NormKind,
};

/// The shape and options of an [`Mlp`].
#[derive(Debug, Clone, PartialEq)]
pub struct MlpConfig {
    /// Layer widths, input first: `[d_in, h_1, ..., h_L]` gives `L` layers.
    pub widths: Vec<usize>,
    /// Activation after every layer (see `activate_last`).
    pub activation: Activation,
    /// A norm between each linear map and its activation, or none.
    pub norm: Option<NormKind>,
    /// Weight initialization of every linear map.
    pub init: Init,
    /// Whether the linear maps have a bias.
    pub bias: bool,
    /// Whether the last layer also gets the norm and activation (`false`: the last layer
    /// is a plain linear read-out).
    pub activate_last: bool,
}

impl MlpConfig {
    /// `depth` square layers of width `width` with `activation`, no norm, no bias,
    /// `Normal { gain }` init, every layer activated.
    pub fn deep(width: usize, depth: usize, activation: Activation, gain: f64) -> Self {
        Self {
            widths: vec![width; depth + 1],
            activation,
            norm: None,
            init: Init::Normal { gain },
            bias: false,
            activate_last: true,
        }
    }
}

/// One layer of an [`Mlp`]: `h = act(norm(x·W + b))`.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpLayer<F: Float> {
    /// The linear map.
    pub linear: Linear<F>,
    /// The norm before the activation, if any.
    pub norm: Option<Norm<F>>,
    /// The activation (`Identity` for a plain read-out).
    pub activation: Activation,
}

/// A multilayer perceptron: `h_0 = x`, `h_i = act(norm(h_{i−1}·W_i + b_i))`.
///
/// Parameters are named `layers.{i}.linear.weight`, `layers.{i}.linear.bias`,
/// `layers.{i}.norm.weight`, `layers.{i}.norm.bias`.
///
/// # Example
/// ```
/// use ndarray::Array2;
/// use rand::SeedableRng;
/// use norm_autograd::{Activation, Mlp, MlpConfig, NormKind, Gradients};
///
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
/// let mut cfg = MlpConfig::deep(32, 10, Activation::Tanh, 1.0);
/// cfg.norm = Some(NormKind::LayerNorm);
/// let mlp = Mlp::<f64>::new(&cfg, &mut rng)?;
/// let x = Array2::<f64>::from_shape_fn((16, 32), |(i, j)| ((i * 32 + j) as f64).sin());
/// let (y, cache) = mlp.forward(&x)?;
/// let (_, grads) = mlp.backward(&cache, &y)?;
/// assert_eq!(grads.d_outputs.len(), 10);                 // dL/dh_i for every layer
/// assert_eq!(cache.outputs.len(), 10);                   // h_i for every layer
/// assert!(grads.grad_norms().iter().any(|(n, _)| n == "layers.0.linear.weight"));
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp<F: Float> {
    /// The layers, input first.
    pub layers: Vec<MlpLayer<F>>,
}

/// The saved state of one layer's forward.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpLayerCache<F> {
    linear: LinearCache<F>,
    norm: Option<NormCache<F, ndarray::Ix2>>,
    act: ActivationCache<F, ndarray::Ix2>,
}

/// What [`Mlp::forward`] saves; also the per-layer outputs for inspection.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpCache<F> {
    layers: Vec<MlpLayerCache<F>>,
    /// `h_i`, the output of every layer (after its activation), input side first.
    pub outputs: Vec<Array2<F>>,
}

/// Gradients of one [`MlpLayer`].
#[derive(Debug, Clone, PartialEq)]
pub struct MlpLayerGrads<F> {
    /// Of the linear map.
    pub linear: LinearGrads<F>,
    /// Of the norm, if any.
    pub norm: Option<NormGrads<F>>,
}

/// Gradients of an [`Mlp`], plus the gradient reaching every layer.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpGrads<F> {
    /// Parameter gradients per layer.
    pub layers: Vec<MlpLayerGrads<F>>,
    /// `dL/dh_i`: the gradient with respect to each layer's output (after activation).
    pub d_outputs: Vec<Array2<F>>,
    /// `dL/dz_i`: the gradient with respect to each layer's linear output `z_i = h_{i−1}W_i + b_i`.
    pub d_preacts: Vec<Array2<F>>,
}

impl<F: Float> Mlp<F> {
    /// Builds the layers of `config`, drawing weights from `rng` layer by layer.
    ///
    /// # Errors
    /// [`GradError::ZeroSize`] for fewer than two widths or a zero width;
    /// the errors of [`Init::sample`].
    pub fn new<R: Rng + ?Sized>(config: &MlpConfig, rng: &mut R) -> Result<Self, GradError> {
        if config.widths.len() < 2 {
            return Err(GradError::ZeroSize {
                what: "layers (widths.len() - 1)",
            });
        }
        let n = config.widths.len() - 1;
        let mut layers = Vec::with_capacity(n);
        for (i, w) in config.widths.windows(2).enumerate() {
            let last = i + 1 == n;
            let active = !last || config.activate_last;
            let linear = Linear::new(w[0], w[1], config.bias, config.init, rng)?;
            let norm = match (active, config.norm) {
                (true, Some(kind)) => Some(Norm::new(kind, w[1])?),
                _ => None,
            };
            let activation = if active {
                config.activation
            } else {
                Activation::Identity
            };
            layers.push(MlpLayer {
                linear,
                norm,
                activation,
            });
        }
        Ok(Self { layers })
    }

    /// Runs `x` (`(rows, d_in)`) through every layer.
    ///
    /// # Errors
    /// [`GradError::MatMul`] if `x` does not have `d_in` columns.
    pub fn forward(&self, x: &ArrayRef2<F>) -> Result<(Array2<F>, MlpCache<F>), GradError> {
        let mut h = x.to_owned();
        let mut caches = Vec::with_capacity(self.layers.len());
        let mut outputs = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (z, lc) = layer.linear.forward(&h)?;
            let (z, nc) = match &layer.norm {
                Some(n) => {
                    let (zn, c) = n.forward(&z)?;
                    (zn, Some(c))
                }
                None => (z, None),
            };
            let (a, ac) = layer.activation.forward(&z)?;
            caches.push(MlpLayerCache {
                linear: lc,
                norm: nc,
                act: ac,
            });
            outputs.push(a.clone());
            h = a;
        }
        Ok((
            h,
            MlpCache {
                layers: caches,
                outputs,
            },
        ))
    }

    /// Backward through every layer from `dy = dL/dy`; returns `dL/dx` and the gradients.
    ///
    /// # Errors
    /// [`GradError::ShapeMismatch`] if `dy` or the cache do not fit this network.
    pub fn backward(
        &self,
        cache: &MlpCache<F>,
        dy: &ArrayRef2<F>,
    ) -> Result<(Array2<F>, MlpGrads<F>), GradError> {
        if cache.layers.len() != self.layers.len() {
            return Err(GradError::ShapeMismatch {
                what: "cache layers",
                expected: vec![self.layers.len()],
                got: vec![cache.layers.len()],
            });
        }
        let n = self.layers.len();
        let mut g = dy.to_owned();
        let mut layers = Vec::with_capacity(n);
        let mut d_outputs = Vec::with_capacity(n);
        let mut d_preacts = Vec::with_capacity(n);
        for (layer, c) in self.layers.iter().zip(&cache.layers).rev() {
            d_outputs.push(g.clone());
            let mut dz = layer.activation.backward(&c.act, &g)?;
            let norm_grads = match (&layer.norm, &c.norm) {
                (Some(norm), Some(nc)) => {
                    let (d, ng) = norm.backward(nc, &dz)?;
                    dz = d;
                    Some(ng)
                }
                (None, None) => None,
                (Some(_), None) => {
                    return Err(GradError::CacheMismatch {
                        expected: "MLP layer with a norm",
                        got: "MLP layer without a norm",
                    });
                }
                (None, Some(_)) => {
                    return Err(GradError::CacheMismatch {
                        expected: "MLP layer without a norm",
                        got: "MLP layer with a norm",
                    });
                }
            };
            let (dx, lg) = layer.linear.backward(&c.linear, &dz)?;
            d_preacts.push(dz);
            layers.push(MlpLayerGrads {
                linear: lg,
                norm: norm_grads,
            });
            g = dx;
        }
        layers.reverse();
        d_outputs.reverse();
        d_preacts.reverse();
        Ok((
            g,
            MlpGrads {
                layers,
                d_outputs,
                d_preacts,
            },
        ))
    }
}

impl<F: Float> Module<F> for Mlp<F> {
    fn visit_params(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("layers.{i}");
            l.linear
                .visit_params(&mut |n, v| f(&join(&join(&p, "linear"), n), v));
            if let Some(norm) = &l.norm {
                norm.visit_params(&mut |n, v| f(&join(&join(&p, "norm"), n), v));
            }
        }
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, F>)) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            let p = format!("layers.{i}");
            l.linear
                .visit_params_mut(&mut |n, v| f(&join(&join(&p, "linear"), n), v));
            if let Some(norm) = &mut l.norm {
                norm.visit_params_mut(&mut |n, v| f(&join(&join(&p, "norm"), n), v));
            }
        }
    }
}

impl<F: Float> Gradients<F> for MlpGrads<F> {
    fn visit_grads(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("layers.{i}");
            l.linear
                .visit_grads(&mut |n, v| f(&join(&join(&p, "linear"), n), v));
            if let Some(ng) = &l.norm {
                ng.visit_grads(&mut |n, v| f(&join(&join(&p, "norm"), n), v));
            }
        }
    }
}
