//! `Norm<F>`: LayerNorm or RmsNorm as a trainable layer (`forward -> (y, cache)`,
//! `backward(cache, dy) -> (dx, grads)`), with named parameters. The kernels it calls
//! live in `norm-core` (forward) and `norm_backward/` (backward).

use ndarray::{
    Array, Array1, ArrayRef, ArrayView1, ArrayViewD, ArrayViewMut1, ArrayViewMutD, Dimension, Ix1,
};
use norm_core::{Float, LayerNorm, LayerNormStats, RmsNorm, RmsNormStats};

use crate::linear::{fit, slice_mut, slice_of};
use crate::norm_backward::{layer_norm_backward_into, rms_norm_backward_into};
use crate::{GradError, Gradients, Module, NormGrads};

/// Which normalization a layer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NormKind {
    /// LayerNorm: subtract the mean, divide by the std; weight and bias.
    LayerNorm,
    /// RmsNorm: divide by the root mean square; weight only.
    RmsNorm,
}

impl NormKind {
    /// A short name (`"LayerNorm"`, `"RmsNorm"`).
    pub fn name(self) -> &'static str {
        match self {
            NormKind::LayerNorm => "LayerNorm",
            NormKind::RmsNorm => "RmsNorm",
        }
    }
}

/// A LayerNorm or RmsNorm over the last axis, as a layer with a backward pass.
///
/// Parameters: `weight` (gamma) and, if present, `bias` (beta).
///
/// # Example
/// ```
/// use ndarray::Array2;
/// use norm_autograd::{Norm, NormKind};
///
/// let norm = Norm::<f64>::new(NormKind::LayerNorm, 4)?;
/// let x = Array2::from_shape_fn((3, 4), |(i, j)| (i * j) as f64);
/// let (y, cache) = norm.forward(&x)?;
/// let (dx, grads) = norm.backward(&cache, &y)?;
/// assert_eq!(dx.shape(), x.shape());
/// assert!(grads.dbeta.is_some());
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Norm<F: Float> {
    /// A LayerNorm.
    Layer(LayerNorm<F>),
    /// An RmsNorm.
    Rms(RmsNorm<F>),
}

/// The saved statistics of one [`Norm`] forward.
#[derive(Debug, Clone, PartialEq)]
pub enum NormStats<F, E: Dimension> {
    /// Mean and 1/std per row.
    Layer(LayerNormStats<F, E>),
    /// 1/rms per row.
    Rms(RmsNormStats<F, E>),
}

/// What a [`Norm`] forward saves for its backward: the input and its row statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct NormCache<F, D: Dimension> {
    /// The input.
    pub x: Array<F, D>,
    /// The per-row statistics.
    pub stats: NormStats<F, D::Smaller>,
}

impl<F: Float> Norm<F> {
    /// A norm over `dim` features with the `norm-core` defaults: LayerNorm with weight 1,
    /// bias 0, eps 1e-5; RmsNorm with weight 1, no bias, eps 1e-6.
    ///
    /// # Errors
    /// [`norm_core::NormError::ZeroDim`] if `dim == 0`.
    pub fn new(kind: NormKind, dim: usize) -> Result<Self, GradError> {
        Ok(match kind {
            NormKind::LayerNorm => Norm::Layer(LayerNorm::new(dim)?),
            NormKind::RmsNorm => Norm::Rms(RmsNorm::new(dim)?),
        })
    }

    /// Which kind of norm this is.
    pub fn kind(&self) -> NormKind {
        match self {
            Norm::Layer(_) => NormKind::LayerNorm,
            Norm::Rms(_) => NormKind::RmsNorm,
        }
    }

    /// Number of features normalized.
    pub fn dim(&self) -> usize {
        match self {
            Norm::Layer(n) => n.dim(),
            Norm::Rms(n) => n.dim(),
        }
    }

    /// The weight (gamma).
    pub fn weight(&self) -> &[F] {
        match self {
            Norm::Layer(n) => n.weight(),
            Norm::Rms(n) => n.weight(),
        }
    }

    /// The bias (beta), if any.
    pub fn bias(&self) -> Option<&[F]> {
        match self {
            Norm::Layer(n) => n.bias(),
            Norm::Rms(n) => n.bias(),
        }
    }

    #[allow(clippy::type_complexity)]
    /// Normalizes `x` over its last axis; returns the output and the cache for
    /// [`backward`](Self::backward).
    ///
    /// # Errors
    /// The `norm-core` shape errors (0-d input, wrong last axis), wrapped.
    pub fn forward<D: Dimension>(
        &self,
        x: &ArrayRef<F, D>,
    ) -> Result<(Array<F, D>, NormCache<F, D>), GradError> {
        let mut y = Array::zeros(x.raw_dim());
        let mut cache = NormCache::empty();
        self.forward_into(x, &mut y, &mut cache)?;
        Ok((y, cache))
    }

    /// [`forward`](Self::forward) into the caller's output and cache (reshaped only when
    /// the shape of `x` changes; then nothing is allocated).
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    pub fn forward_into<D: Dimension>(
        &self,
        x: &ArrayRef<F, D>,
        y: &mut Array<F, D>,
        cache: &mut NormCache<F, D>,
    ) -> Result<(), GradError> {
        let lead = match x.shape().split_last() {
            Some((&last, lead)) if last == self.dim() => {
                let mut d = D::Smaller::zeros(lead.len());
                d.slice_mut().copy_from_slice(lead);
                d
            }
            _ => {
                // The norm-core errors name the shapes.
                return match self {
                    Norm::Layer(n) => n.forward(x).map(|_| ()),
                    Norm::Rms(n) => n.forward(x).map(|_| ()),
                }
                .map_err(GradError::from);
            }
        };
        fit(&mut cache.x, x.raw_dim());
        cache.x.assign(x);
        fit(y, x.raw_dim());
        let (xs, ys) = (slice_of(&cache.x)?, slice_mut(y)?);
        match self {
            Norm::Layer(n) => {
                if !matches!(cache.stats, NormStats::Layer(_)) {
                    cache.stats = NormStats::Layer(LayerNormStats {
                        mean: Array::zeros(lead.clone()),
                        rstd: Array::zeros(lead.clone()),
                    });
                }
                let NormStats::Layer(st) = &mut cache.stats else {
                    unreachable!("set just above")
                };
                fit(&mut st.mean, lead.clone());
                fit(&mut st.rstd, lead);
                n.forward_slice_with_stats(xs, ys, slice_mut(&mut st.mean)?, slice_mut(&mut st.rstd)?)?;
            }
            Norm::Rms(n) => {
                if !matches!(cache.stats, NormStats::Rms(_)) {
                    cache.stats = NormStats::Rms(RmsNormStats {
                        rrms: Array::zeros(lead.clone()),
                    });
                }
                let NormStats::Rms(st) = &mut cache.stats else {
                    unreachable!("set just above")
                };
                fit(&mut st.rrms, lead);
                n.forward_slice_with_stats(xs, ys, slice_mut(&mut st.rrms)?)?;
            }
        }
        Ok(())
    }

    /// Gradients of the loss with respect to the input and the parameters, from the
    /// cache of [`forward`](Self::forward) and `dy = dL/dy`.
    ///
    /// ```text
    /// LayerNorm: dx = rstd·(g - mean(g) - x̂·mean(g·x̂))
    /// RmsNorm:   dx = rrms·(g - x̂·mean(g·x̂))            g = dy·gamma
    /// ```
    ///
    /// # Errors
    /// [`GradError::CacheMismatch`] for a cache of the other norm kind; the shape
    /// errors of [`crate::layer_norm_backward`].
    pub fn backward<D: Dimension>(
        &self,
        cache: &NormCache<F, D>,
        dy: &ArrayRef<F, D>,
    ) -> Result<(Array<F, D>, NormGrads<F>), GradError> {
        let mut dx = Array::zeros(cache.x.raw_dim());
        let mut grads = NormGrads::empty();
        self.backward_into(cache, dy, &mut dx, &mut grads)?;
        Ok((dx, grads))
    }

    /// [`backward`](Self::backward) into the caller's `dx` and gradients (reshaped only
    /// when their shapes differ).
    ///
    /// # Errors
    /// As [`backward`](Self::backward).
    pub fn backward_into<D: Dimension>(
        &self,
        cache: &NormCache<F, D>,
        dy: &ArrayRef<F, D>,
        dx: &mut Array<F, D>,
        grads: &mut NormGrads<F>,
    ) -> Result<(), GradError> {
        let d = self.dim();
        fit(dx, cache.x.raw_dim());
        fit(&mut grads.dgamma, Ix1(d));
        if self.bias().is_some() {
            let db = grads.dbeta.get_or_insert_with(|| Array1::zeros(d));
            fit(db, Ix1(d));
        } else {
            grads.dbeta = None;
        }
        let dgamma = slice_mut(&mut grads.dgamma)?;
        let dbeta = match grads.dbeta.as_mut() {
            Some(b) => Some(slice_mut(b)?),
            None => None,
        };
        match (self, &cache.stats) {
            (Norm::Layer(n), NormStats::Layer(s)) => {
                layer_norm_backward_into(n, &cache.x, s, dy, dx, dgamma, dbeta)
            }
            (Norm::Rms(n), NormStats::Rms(s)) => {
                rms_norm_backward_into(n, &cache.x, s, dy, dx, dgamma, dbeta)
            }
            (Norm::Layer(_), NormStats::Rms(_)) => Err(GradError::CacheMismatch {
                expected: "LayerNorm",
                got: "RmsNorm",
            }),
            (Norm::Rms(_), NormStats::Layer(_)) => Err(GradError::CacheMismatch {
                expected: "RmsNorm",
                got: "LayerNorm",
            }),
        }
    }
}

impl<F: Float, D: Dimension> NormCache<F, D> {
    /// An empty cache (filled by [`Norm::forward_into`]).
    pub fn empty() -> Self {
        let n = D::NDIM.unwrap_or(1);
        Self {
            x: Array::zeros(D::zeros(n)),
            stats: NormStats::Rms(RmsNormStats {
                rrms: Array::zeros(D::Smaller::zeros(n.saturating_sub(1))),
            }),
        }
    }
}

impl<F: Float> NormGrads<F> {
    /// Empty gradients (filled by [`Norm::backward_into`]).
    pub fn empty() -> Self {
        Self {
            dgamma: Array1::zeros(0),
            dbeta: None,
        }
    }
}

impl<F: Float> Module<F> for Norm<F> {
    fn visit_params(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        f("weight", ArrayView1::from(self.weight()).into_dyn());
        if let Some(b) = self.bias() {
            f("bias", ArrayView1::from(b).into_dyn());
        }
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, F>)) {
        match self {
            Norm::Layer(n) => {
                f("weight", ArrayViewMut1::from(n.weight_mut()).into_dyn());
                if let Some(b) = n.bias_mut() {
                    f("bias", ArrayViewMut1::from(b).into_dyn());
                }
            }
            Norm::Rms(n) => {
                f("weight", ArrayViewMut1::from(n.weight_mut()).into_dyn());
                if let Some(b) = n.bias_mut() {
                    f("bias", ArrayViewMut1::from(b).into_dyn());
                }
            }
        }
    }
}

impl<F: Float> Gradients<F> for NormGrads<F> {
    fn visit_grads(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        f("weight", self.dgamma.view().into_dyn());
        if let Some(b) = &self.dbeta {
            f("bias", b.view().into_dyn());
        }
    }
}
