//! The parameters both norms share (weight, optional bias, eps), their validation, and
//! a macro generating the identical constructors and accessors of `LayerNorm`/`RmsNorm`;
//! the cache-line-aligned row ([`AlignedRow`]) that holds the weight and bias.

use crate::kernels::RowParams;
use crate::{Element, Float, NormError};

/// Weight (gamma), optional bias (beta) and eps, validated together. Weight and bias are
/// stored in the element type, each starting on a cache line ([`AlignedRow`]), eps in
/// its accumulation type (f32 for bf16 and f16: eps = 1e-5 is a subnormal in f16, and
/// PyTorch too passes eps to its half-precision kernels in the wider type).
#[derive(Debug, Clone, PartialEq)]
pub struct Affine<F: Element> {
    pub(crate) weight: AlignedRow<F>,
    pub(crate) bias: Option<AlignedRow<F>>,
    pub(crate) eps: F::Acc,
    /// Copies of the weight and bias matched to the rows' offset from a line, made on
    /// first use: every method that changes the weight or bias clears them
    /// ([`Affine::changed`]).
    pub(crate) matched: Matched<F>,
}

/// The slots of [`Matched`]: one per offset from a line that is a multiple of 4 bytes
/// (4, 8, …, 60; the f32 and f64 rows `kernels::matches` takes).
const MATCHED_SLOTS: usize = LINE / 4 - 1;

/// A norm's weight and bias copied to start `mis` bytes past a cache line, where a call's
/// rows start (`kernels::matches`, AVX-512 f32 and f64 rows), kept per offset so
/// that a model calling its norm on the same kind of buffers makes the copies once
/// instead of at every call (two allocations and copies of a row each). By the targets
/// bench (five alternating runs against copies made per call, AVX-512, one thread,
/// Intel Xeon family 6 model 167, 6 December 2026): f32 at 64×768, LayerNorm / plain
/// copy 0.59–0.61 → 0.60–0.62, RmsNorm / plain copy 0.78–0.81 → 0.81–0.83. Made at most once per slot
/// ([`OnceLock`](std::sync::OnceLock), so calls from many threads share them); a clone
/// starts empty, and the comparison and `Debug` of a norm ignore them.
pub(crate) struct Matched<F> {
    slots: [std::sync::OnceLock<Box<MatchedRows<F>>>; MATCHED_SLOTS],
}

/// The weight and bias of [`Matched`] at one offset.
pub(crate) struct MatchedRows<F> {
    pub(crate) weight: AlignedRow<F>,
    pub(crate) bias: Option<AlignedRow<F>>,
}

impl<F> Default for Matched<F> {
    fn default() -> Self {
        Matched {
            slots: [const { std::sync::OnceLock::new() }; MATCHED_SLOTS],
        }
    }
}

impl<F> Clone for Matched<F> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<F> PartialEq for Matched<F> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<F> std::fmt::Debug for Matched<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Matched")
    }
}

impl<F: Copy + Default> Matched<F> {
    /// `weight` and `bias` starting `mis` bytes past a line, copied on the first call
    /// for that offset; `None` for an offset without a slot (not a multiple of 4
    /// bytes, or not within a line). The caller passes the weight and bias the copies
    /// were made from (those of the [`Affine`] holding them).
    pub(crate) fn rows(&self, mis: usize, weight: &[F], bias: Option<&[F]>) -> Option<&MatchedRows<F>> {
        if !mis.is_multiple_of(4) {
            return None;
        }
        let slot = self.slots.get((mis / 4).checked_sub(1)?)?;
        Some(slot.get_or_init(|| {
            Box::new(MatchedRows {
                weight: AlignedRow::from_slice_past(weight, mis),
                bias: bias.map(|b| AlignedRow::from_slice_past(b, mis)),
            })
        }))
    }
}

/// The bytes of a cache line on current x86-64 and Arm CPUs, and of an AVX-512 vector.
/// Bytes in a cache line.
pub(crate) const LINE: usize = 64;

/// A row of values whose first element starts on a cache line (64 bytes), as the
/// weight and bias rows are kept: every vector the kernels load from them is then
/// aligned, and no load of them straddles two lines. The rows of a call's input are
/// wherever the caller's allocator put them (`Vec` buffers of a few KiB or more are
/// usually 16 bytes past a line on Linux), so the weight and bias are the loads the
/// crate can align. By A/B measurement (the bare LayerNorm, `ceiling::layer_norm_bare`,
/// 64×768 f32 in cache, one thread, Intel Xeon family 6 model 167, 5 December 2026,
/// two runs): inputs 16 bytes past a line, weight and bias on a line against 16 bytes
/// past, 0.67 against 0.60-0.61 of the plain copy on AVX-512, and 0.49-0.52 against
/// 0.50-0.51 on AVX2 (its 32-byte loads straddle a line half as often); inputs on a
/// line, 0.81-0.82 against 0.72.
///
/// Safe code only: a `Vec` with room for a line's worth of extra elements, the row
/// starting at the first element on a line. The heap buffer never moves (nothing is
/// pushed), and a clone is laid out afresh in its own buffer.
pub(crate) struct AlignedRow<F> {
    buf: Vec<F>,
    start: usize,
    len: usize,
}

impl<F: Copy + Default> AlignedRow<F> {
    /// `v`'s values in a row starting on a line (`v` itself when it already does).
    pub(crate) fn from_vec(v: Vec<F>) -> Self {
        if (v.as_ptr() as usize).is_multiple_of(LINE) || std::mem::size_of::<F>() == 0 {
            let len = v.len();
            return AlignedRow {
                buf: v,
                start: 0,
                len,
            };
        }
        Self::from_slice(&v)
    }

    /// A row of `len` copies of `value`: a buffer of a line's worth of elements more,
    /// the row starting at its first element on a line.
    pub(crate) fn filled(value: F, len: usize) -> Self {
        Self::filled_past(value, len, 0)
    }

    /// A row of `len` copies of `value` starting `mis` bytes past a line (`mis < LINE`,
    /// a multiple of `F`'s size: where a call's rows start, `kernels::matches`).
    pub(crate) fn filled_past(value: F, len: usize, mis: usize) -> Self {
        // The element types here are 2, 4 or 8 bytes, divisors of LINE, and a buffer's
        // elements lie a multiple of their size from any line; for any other size the
        // row is merely unaligned (the `max` and `% size` keep it in bounds).
        let size = std::mem::size_of::<F>().max(1);
        let buf = vec![value; len + LINE.div_ceil(size)];
        let start = (LINE + mis % LINE - buf.as_ptr() as usize % LINE) % LINE / size;
        AlignedRow { buf, start, len }
    }

    /// `v`'s values in a new row starting `mis` bytes past a line (see
    /// [`filled_past`](Self::filled_past)).
    pub(crate) fn from_slice_past(v: &[F], mis: usize) -> Self {
        let mut row = Self::filled_past(F::default(), v.len(), mis);
        row.as_mut_slice().copy_from_slice(v);
        row
    }

    /// `v`'s values in a new row starting on a line.
    pub(crate) fn from_slice(v: &[F]) -> Self {
        Self::from_slice_past(v, 0)
    }
}

impl<F> AlignedRow<F> {
    pub(crate) fn as_slice(&self) -> &[F] {
        &self.buf[self.start..self.start + self.len]
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [F] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

impl<F> std::ops::Deref for AlignedRow<F> {
    type Target = [F];
    fn deref(&self) -> &[F] {
        self.as_slice()
    }
}

impl<F> std::ops::DerefMut for AlignedRow<F> {
    fn deref_mut(&mut self) -> &mut [F] {
        self.as_mut_slice()
    }
}

impl<F: Copy + Default> Clone for AlignedRow<F> {
    fn clone(&self) -> Self {
        Self::from_slice(self)
    }
}

impl<F: PartialEq> PartialEq for AlignedRow<F> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<F: std::fmt::Debug> std::fmt::Debug for AlignedRow<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_slice().fmt(f)
    }
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
            matched: &self.matched,
        }
    }
}

impl<F: Element> Affine<F> {
    /// Clears the matched copies: called by every method that changes the weight or
    /// bias (or hands them out mutably), before it does.
    pub(crate) fn changed(&mut self) -> &mut Self {
        self.matched = Matched::default();
        self
    }

    pub(crate) fn new(dim: usize, with_bias: bool, eps: f64) -> Result<Self, NormError> {
        if dim == 0 {
            return Err(NormError::ZeroDim);
        }
        Ok(Self {
            weight: AlignedRow::filled(F::from_acc(num_traits::One::one()), dim),
            bias: with_bias.then(|| AlignedRow::filled(F::default(), dim)),
            eps: F::Acc::from_f64_round(eps),
            matched: Matched::default(),
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
            weight: AlignedRow::from_vec(weight),
            bias: bias.map(AlignedRow::from_vec),
            eps: check_eps(eps)?,
            matched: Matched::default(),
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
                self.p.changed().weight = $crate::params::AlignedRow::from_vec(weight);
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
                self.p.changed().bias = Some($crate::params::AlignedRow::from_vec(bias));
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
                    let dim = self.p.weight.len();
                    self.p.changed().bias = Some($crate::params::AlignedRow::filled(F::default(), dim));
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
                self.p.changed().bias = None;
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

            /// The weight (gamma). It starts on a 64-byte boundary (a cache line), as does
            /// the bias: the kernels' vector loads of them never straddle two lines.
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
                &mut self.p.changed().weight
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
                self.p.changed().bias.as_deref_mut()
            }
        }
    };
}
pub(crate) use impl_norm_params;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LayerNorm, RmsNorm, bf16, f16};

    fn on_line<T>(v: &[T]) -> bool {
        (v.as_ptr() as usize).is_multiple_of(LINE)
    }

    /// A `Vec` of `0, 1, …, len − 1` whose buffer does not start on a line (the
    /// allocator's buffers start 16 bytes apart at least, so some of a few tries do not;
    /// the tries kept alive meanwhile so each gets a new address). `aligned`: one that does.
    fn vec_on_line(len: usize, aligned: bool) -> Vec<f32> {
        let mut tries = Vec::new();
        for _ in 0..256 {
            let v: Vec<f32> = (0..len).map(|i| i as f32).collect();
            if on_line(&v) == aligned {
                return v;
            }
            tries.push(v);
        }
        panic!("no buffer with aligned = {aligned} in 256 tries");
    }

    /// Every constructor and builder leaves weight and bias on a line with the values
    /// given, clones included, for every element type; and a row over an aligned `Vec`
    /// keeps that `Vec`'s buffer (no copy).
    #[test]
    fn weight_and_bias_start_on_a_line() {
        for d in [1, 3, 16, 17, 768] {
            let ln = LayerNorm::<f32>::new(d).unwrap();
            assert!(on_line(ln.weight()) && on_line(ln.bias().unwrap()));
            assert!(ln.weight().iter().all(|&w| w == 1.0) && ln.bias().unwrap().iter().all(|&b| b == 0.0));
            let c = ln.clone();
            assert!(on_line(c.weight()) && on_line(c.bias().unwrap()) && c == ln);
            {
                let w = vec_on_line(d, false);
                let n = RmsNorm::<f32>::from_weights(w.clone(), Some(w.clone()), 1e-6).unwrap();
                assert!(on_line(n.weight()) && on_line(n.bias().unwrap()));
                assert_eq!((n.weight(), n.bias().unwrap()), (&w[..], &w[..]));
                let n = RmsNorm::<f32>::new(d).unwrap().with_weight(w.clone()).unwrap();
                let n = n.with_bias(w.clone()).unwrap();
                assert!(on_line(n.weight()) && on_line(n.bias().unwrap()));
                assert_eq!((n.weight(), n.bias().unwrap()), (&w[..], &w[..]));
            }
            let n = RmsNorm::<f64>::new(d).unwrap().with_zero_bias();
            assert!(on_line(n.weight()) && on_line(n.bias().unwrap()));
            let n = LayerNorm::<bf16>::new(d).unwrap();
            assert!(on_line(n.weight()) && on_line(n.bias().unwrap()));
            let n = LayerNorm::<f16>::new(d).unwrap();
            assert!(on_line(n.weight()) && on_line(n.bias().unwrap()));
            let mut n = LayerNorm::<f32>::new(d).unwrap();
            n.weight_mut()[d - 1] = 2.0;
            assert_eq!(n.weight()[d - 1], 2.0);
            assert_ne!(n, ln);
        }
        let w = vec_on_line(5, true);
        let ptr = w.as_ptr();
        let row = AlignedRow::from_vec(w);
        assert_eq!(row.as_ptr(), ptr);
        assert_eq!(&*row, &[0.0, 1.0, 2.0, 3.0, 4.0]);
        assert!(AlignedRow::<f32>::from_slice(&[]).is_empty());
        assert_eq!(format!("{:?}", AlignedRow::filled(1u16, 2)), "[1, 1]");
    }
}
