//! The parameters both norms share (weight, optional bias, eps), their validation, and
//! a macro generating the identical constructors and accessors of `LayerNorm`/`RmsNorm`.

use crate::kernels::RowParams;
use crate::{Element, Float, NormError};

/// Weight (gamma), optional bias (beta) and eps, validated together. Weight and bias are
/// stored in the element type, eps in its accumulation type (f32 for bf16 and f16:
/// eps = 1e-5 is a subnormal in f16, and PyTorch too passes eps to its half-precision
/// kernels in the wider type).
#[derive(Debug, Clone, PartialEq)]
pub struct Affine<F: Element> {
    pub(crate) weight: Vec<F>,
    pub(crate) bias: Option<Vec<F>>,
    pub(crate) eps: F::Acc,
}

pub(crate) fn check_eps<F: Float>(eps: F) -> Result<F, NormError> {
    if eps.is_finite() && eps >= F::zero() {
        Ok(eps)
    } else {
        Err(NormError::InvalidEps {
            eps: eps.to_f64_exact(),
        })
    }
}

impl<F: Float> Affine<F> {
    /// The parameters as the row kernels take them.
    pub(crate) fn row_params(&self) -> RowParams<'_, F> {
        RowParams {
            weight: &self.weight,
            bias: self.bias.as_deref(),
            eps: self.eps,
        }
    }
}

impl<F: Element> Affine<F> {
    pub(crate) fn new(dim: usize, with_bias: bool, eps: f64) -> Result<Self, NormError> {
        if dim == 0 {
            return Err(NormError::ZeroDim);
        }
        Ok(Self {
            weight: vec![F::from_acc(num_traits::One::one()); dim],
            bias: with_bias.then(|| vec![F::default(); dim]),
            eps: F::Acc::from_f64_round(eps),
        })
    }

    pub(crate) fn from_parts(weight: Vec<F>, bias: Option<Vec<F>>, eps: F::Acc) -> Result<Self, NormError> {
        if weight.is_empty() {
            return Err(NormError::ZeroDim);
        }
        if let Some(b) = &bias
            && b.len() != weight.len()
        {
            return Err(NormError::BiasLen {
                bias: b.len(),
                dim: weight.len(),
            });
        }
        Ok(Self {
            weight,
            bias,
            eps: check_eps(eps)?,
        })
    }
}

/// Generates the constructors and accessors that `LayerNorm` and `RmsNorm` share.
macro_rules! impl_norm_params {
    ($name:ident, $default_eps:expr, $default_bias:expr, $kind:literal) => {
        impl<F: crate::Element> $name<F> {
            #[doc = concat!("The default eps of a ", $kind, ".")]
            ///
            /// # Example
            /// ```
            #[doc = concat!(" use norm_core::", stringify!($name), " as Norm;")]
            #[doc = concat!(" assert_eq!(Norm::<f32>::DEFAULT_EPS, ", stringify!($default_eps), ");")]
            /// assert_eq!(Norm::<f64>::new(8)?.eps(), Norm::<f64>::DEFAULT_EPS);
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub const DEFAULT_EPS: f64 = $default_eps;

            #[doc = concat!("A ", $kind, " over `dim` features with the default eps and weight (gamma) of ones.")]
            ///
            /// # Errors
            /// [`NormError::ZeroDim`] if `dim == 0`.
            ///
            /// # Example
            /// ```
            #[doc = concat!(" use norm_core::", stringify!($name), " as Norm;")]
            /// let n = Norm::<f32>::new(768)?;
            /// assert_eq!(n.dim(), 768);
            /// assert!(n.weight().iter().all(|&w| w == 1.0));
            /// assert!(Norm::<f32>::new(0).is_err());
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn new(dim: usize) -> Result<Self, NormError> {
                Ok(Self {
                    p: Affine::new(dim, $default_bias, Self::DEFAULT_EPS)?,
                })
            }

            #[doc = concat!("A ", $kind, " from a given weight (gamma), optional bias (beta) and eps.")]
            ///
            /// eps is given in the accumulation type ([`Element::Acc`](crate::Element::Acc):
            /// f32 for `bf16` and `f16`).
            ///
            /// # Errors
            /// [`NormError::ZeroDim`] for an empty weight, [`NormError::BiasLen`] if the bias
            /// length differs, [`NormError::InvalidEps`] for a negative, NaN or infinite eps.
            ///
            /// # Example
            /// ```
            #[doc = concat!(" use norm_core::", stringify!($name), " as Norm;")]
            /// let n = Norm::from_weights(vec![1.0f32, 2.0], Some(vec![0.5, 0.5]), 1e-6)?;
            /// assert_eq!((n.dim(), n.eps()), (2, 1e-6));
            /// assert_eq!(n.bias(), Some(&[0.5f32, 0.5][..]));
            /// assert!(Norm::from_weights(vec![1.0f32], Some(vec![0.0, 0.0]), 1e-6).is_err());
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn from_weights(weight: Vec<F>, bias: Option<Vec<F>>, eps: F::Acc) -> Result<Self, NormError> {
                Ok(Self {
                    p: Affine::from_parts(weight, bias, eps)?,
                })
            }

            /// The same layer with another eps.
            ///
            /// # Errors
            /// [`NormError::InvalidEps`] for a negative, NaN or infinite eps.
            ///
            /// # Example
            /// ```
            #[doc = concat!(" use norm_core::", stringify!($name), " as Norm;")]
            /// let n = Norm::<f64>::new(8)?.with_eps(0.0)?;
            /// assert_eq!(n.eps(), 0.0);
            /// assert!(n.with_eps(-1.0).is_err());
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn with_eps(mut self, eps: F::Acc) -> Result<Self, NormError> {
                self.p.eps = crate::params::check_eps(eps)?;
                Ok(self)
            }

            /// The same layer with another weight (gamma) of the same length.
            ///
            /// # Errors
            /// [`NormError::WeightLen`] if `weight.len()` differs from [`dim`](Self::dim).
            ///
            /// # Example
            /// ```
            #[doc = concat!(" use norm_core::", stringify!($name), " as Norm;")]
            /// let n = Norm::<f32>::new(2)?.with_weight(vec![2.0, 3.0])?;
            /// assert_eq!(n.weight(), &[2.0, 3.0]);
            /// assert!(n.with_weight(vec![1.0]).is_err());
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn with_weight(mut self, weight: Vec<F>) -> Result<Self, NormError> {
                if weight.len() != self.p.weight.len() {
                    return Err(NormError::WeightLen {
                        weight: weight.len(),
                        dim: self.p.weight.len(),
                    });
                }
                self.p.weight = weight;
                Ok(self)
            }

            /// The same layer with another bias (beta) of the same length.
            ///
            /// # Errors
            /// [`NormError::BiasLen`] if `bias.len()` differs from [`dim`](Self::dim).
            ///
            /// # Example
            /// ```
            #[doc = concat!(" use norm_core::", stringify!($name), " as Norm;")]
            /// let n = Norm::<f32>::new(2)?.with_bias(vec![0.1, 0.2])?;
            /// assert_eq!(n.bias(), Some(&[0.1f32, 0.2][..]));
            /// assert!(n.with_bias(vec![0.0; 3]).is_err());
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn with_bias(mut self, bias: Vec<F>) -> Result<Self, NormError> {
                if bias.len() != self.p.weight.len() {
                    return Err(NormError::BiasLen {
                        bias: bias.len(),
                        dim: self.p.weight.len(),
                    });
                }
                self.p.bias = Some(bias);
                Ok(self)
            }

            /// The same layer with a bias (beta) of zeros, if it had none.
            ///
            /// # Example
            /// ```
            #[doc = concat!(" use norm_core::", stringify!($name), " as Norm;")]
            /// let n = Norm::<f32>::new(3)?.with_zero_bias();
            /// assert_eq!(n.bias(), Some(&[0.0f32; 3][..]));
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            #[must_use]
            pub fn with_zero_bias(mut self) -> Self {
                if self.p.bias.is_none() {
                    self.p.bias = Some(vec![F::default(); self.p.weight.len()]);
                }
                self
            }

            /// The same layer without a bias (beta).
            ///
            /// # Example
            /// ```
            #[doc = concat!(" use norm_core::", stringify!($name), " as Norm;")]
            /// let n = Norm::<f32>::new(3)?.with_zero_bias().without_bias();
            /// assert!(n.bias().is_none());
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            #[must_use]
            pub fn without_bias(mut self) -> Self {
                self.p.bias = None;
                self
            }

            /// Number of features normalized (the last-axis length it accepts).
            ///
            /// # Example
            /// ```
            #[doc = concat!(" use norm_core::", stringify!($name), " as Norm;")]
            /// assert_eq!(Norm::<f32>::new(5)?.dim(), 5);
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn dim(&self) -> usize {
                self.p.weight.len()
            }

            /// The eps added under the square root (in the accumulation type: f32 for
            /// `bf16` and `f16`).
            ///
            /// # Example
            /// ```
            #[doc = concat!(" use norm_core::", stringify!($name), " as Norm;")]
            /// assert_eq!(Norm::<f64>::new(5)?.with_eps(1e-3)?.eps(), 1e-3);
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn eps(&self) -> F::Acc {
                self.p.eps
            }

            /// The weight (gamma).
            ///
            /// # Example
            /// ```
            #[doc = concat!(" use norm_core::", stringify!($name), " as Norm;")]
            /// assert_eq!(Norm::<f32>::new(2)?.weight(), &[1.0, 1.0]);
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn weight(&self) -> &[F] {
                &self.p.weight
            }

            /// The weight (gamma), mutable (e.g. for an optimizer step).
            ///
            /// # Example
            /// ```
            #[doc = concat!(" use norm_core::", stringify!($name), " as Norm;")]
            /// let mut n = Norm::<f32>::new(2)?;
            /// n.weight_mut()[0] = 3.0;
            /// assert_eq!(n.weight(), &[3.0, 1.0]);
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn weight_mut(&mut self) -> &mut [F] {
                &mut self.p.weight
            }

            /// The bias (beta), if any.
            ///
            /// # Example
            /// ```
            #[doc = concat!(" use norm_core::", stringify!($name), " as Norm;")]
            /// let n = Norm::<f32>::new(2)?.with_bias(vec![1.0, -1.0])?;
            /// assert_eq!(n.bias(), Some(&[1.0f32, -1.0][..]));
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn bias(&self) -> Option<&[F]> {
                self.p.bias.as_deref()
            }

            /// The bias (beta), mutable, if any.
            ///
            /// # Example
            /// ```
            #[doc = concat!(" use norm_core::", stringify!($name), " as Norm;")]
            /// let mut n = Norm::<f32>::new(2)?.with_zero_bias();
            /// if let Some(b) = n.bias_mut() {
            ///     b[1] = 0.5;
            /// }
            /// assert_eq!(n.bias(), Some(&[0.0f32, 0.5][..]));
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn bias_mut(&mut self) -> Option<&mut [F]> {
                self.p.bias.as_deref_mut()
            }
        }
    };
}
pub(crate) use impl_norm_params;
