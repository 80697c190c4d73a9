//! The `Float` trait: the element types (`f32`, `f64`) the kernels are written for, and
//! (in its sealed supertrait) how each one reaches its vector backends.

use std::fmt::{Debug, Display};
use std::iter::Sum;

mod sealed {
    use crate::simd::{Path, SimdOp, on_f32, on_f64};

    /// Closes [`Float`](crate::Float) to `f32` and `f64`, and routes generic code to the
    /// backends for each (what [`run_on`](crate::simd::run_on) calls).
    pub trait Sealed {
        /// Runs `op` on `path` with the backend for `Self`.
        fn run_on<O: SimdOp<Self>>(path: Path, op: O) -> O::Out
        where
            Self: crate::Float;
    }
    impl Sealed for f32 {
        #[inline(always)]
        fn run_on<O: SimdOp<f32>>(path: Path, op: O) -> O::Out {
            on_f32(path, op)
        }
    }
    impl Sealed for f64 {
        #[inline(always)]
        fn run_on<O: SimdOp<f64>>(path: Path, op: O) -> O::Out {
            on_f64(path, op)
        }
    }
}

/// An element type the norms accept: `f32` or `f64` (sealed).
///
/// Kernels accumulate in the element type itself (f32 lanes for f32, f64 for f64);
/// the precision guarantees come from two-pass statistics and a per-row shift,
/// not from a wider accumulator.
///
/// # Example
/// ```
/// use norm_core::{Float, RmsNorm};
///
/// // Code generic over the element type, as the norms themselves are.
/// fn unit_rms<F: Float>(x: &[F]) -> Result<Vec<F>, norm_core::NormError> {
///     let mut y = vec![F::zero(); x.len()];
///     RmsNorm::<F>::new(x.len())?.with_eps(F::zero())?.forward_slice(x, &mut y)?;
///     Ok(y)
/// }
/// assert_eq!(unit_rms(&[3.0f32, -3.0])?, vec![1.0, -1.0]);
/// assert_eq!(unit_rms(&[2.0f64])?, vec![1.0]);
/// assert_eq!(f32::RESCUE_BELOW.to_f64_exact(), f64::from(1.0e-30f32));
/// # Ok::<(), norm_core::NormError>(())
/// ```
pub trait Float:
    num_traits::Float
    + num_traits::FromPrimitive
    + num_traits::NumAssign
    + ndarray::ScalarOperand
    + Debug
    + Display
    + Default
    + Sum
    + Send
    + Sync
    + 'static
    + sealed::Sealed
{
    /// Mean squares below this are recomputed with scaling: their squares would have
    /// lost precision to subnormals (about `MIN_POSITIVE * 2^mantissa_bits`).
    const RESCUE_BELOW: Self;
    /// Converts to `f64` exactly.
    fn to_f64_exact(self) -> f64;
    /// Converts from `f64`, rounding to nearest.
    fn from_f64_round(v: f64) -> Self;
}

impl Float for f32 {
    const RESCUE_BELOW: Self = 1.0e-30;
    #[inline(always)]
    fn to_f64_exact(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn from_f64_round(v: f64) -> Self {
        v as f32
    }
}

impl Float for f64 {
    const RESCUE_BELOW: Self = 1.0e-290;
    #[inline(always)]
    fn to_f64_exact(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64_round(v: f64) -> Self {
        v
    }
}
