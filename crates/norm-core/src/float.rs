//! The element traits: [`Element`], every type a norm stores (`f32`, `f64`, `bf16`,
//! `f16`) with the type it computes in, and [`Float`], the types the kernels are written
//! for (`f32`, `f64`), with (in its sealed supertrait) how each one reaches its vector
//! backends. The storage-only half types and their conversions live in `storage.rs`.

use std::fmt::{Debug, Display};
use std::iter::Sum;

mod sealed {
    use ndarray::{ArrayRef, Dimension};

    use crate::dispatch::ForcedPath;
    use crate::forward::{self, WithStats};
    use crate::kernels::Kind;
    use crate::params::Affine;
    use crate::simd::{Path, SimdOp, on_f32, on_f64};
    use crate::{Element, NormError, fused, storage};

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

    /// Closes [`Element`] to `f32`, `f64`, `bf16` and `f16`, and routes
    /// the one generic API of `LayerNorm<E>`/`RmsNorm<E>` to the drivers for each: the
    /// f32/f64 kernels directly, the half types through `storage.rs` (widen, the f32
    /// kernel, round once). One inherent impl for all four types keeps type inference
    /// working as it did for f32/f64 alone (`LayerNorm::new(d)?.forward_slice(&x, ..)`).
    /// The types named here sit in private modules, so none of this is nameable outside.
    pub trait SealedElement: Sized {
        /// `norm(x)` over the last axis into a new array (statistics when `want_stats`).
        fn forward_nd<K: Kind, D: Dimension>(
            p: &Affine<Self>,
            x: &ArrayRef<Self, D>,
            want_stats: bool,
        ) -> Result<WithStats<Self, D>, NormError>
        where
            Self: Element;
        /// `norm(x)` over the last axis into the caller's `out`.
        fn forward_into_nd<K: Kind, D: Dimension>(
            p: &Affine<Self>,
            x: &ArrayRef<Self, D>,
            out: &mut ArrayRef<Self, D>,
        ) -> Result<(), NormError>
        where
            Self: Element;
        /// `norm(x)` over row-major slices on `how`'s path, writing the statistics given.
        fn forward_slice<K: Kind>(
            how: ForcedPath,
            p: &Affine<Self>,
            x: &[Self],
            out: &mut [Self],
            stats: [Option<&mut [<Self as Element>::Acc]>; 2],
        ) -> Result<(), NormError>
        where
            Self: Element;
        /// The fused `h = x + r`, `out = norm(h)` over checked row-major slices
        /// (`r = None`: `h` holds the residual).
        fn add_rows<K: Kind>(
            how: ForcedPath,
            p: &Affine<Self>,
            xr: (&[Self], Option<&[Self]>),
            h: &mut [Self],
            out: &mut [Self],
        ) where
            Self: Element;
    }

    /// The routes of a [`Float`](crate::Float) type: its own kernels.
    macro_rules! float_routes {
        ($t:ty) => {
            impl SealedElement for $t {
                fn forward_nd<K: Kind, D: Dimension>(
                    p: &Affine<$t>,
                    x: &ArrayRef<$t, D>,
                    want_stats: bool,
                ) -> Result<WithStats<$t, D>, NormError> {
                    forward::forward_nd::<K, $t, D>(p.row_params(), x, want_stats)
                }
                fn forward_into_nd<K: Kind, D: Dimension>(
                    p: &Affine<$t>,
                    x: &ArrayRef<$t, D>,
                    out: &mut ArrayRef<$t, D>,
                ) -> Result<(), NormError> {
                    forward::forward_into_nd::<K, $t, D>(p.row_params(), x, out)
                }
                fn forward_slice<K: Kind>(
                    how: ForcedPath,
                    p: &Affine<$t>,
                    x: &[$t],
                    out: &mut [$t],
                    stats: [Option<&mut [$t]>; 2],
                ) -> Result<(), NormError> {
                    forward::forward_slice::<K, $t>(how, p.row_params(), x, out, stats)
                }
                fn add_rows<K: Kind>(
                    how: ForcedPath,
                    p: &Affine<$t>,
                    xr: (&[$t], Option<&[$t]>),
                    h: &mut [$t],
                    out: &mut [$t],
                ) {
                    fused::add_rows::<K, $t>(how, p.row_params(), xr, h, out)
                }
            }
        };
    }
    float_routes!(f32);
    float_routes!(f64);

    /// The routes of a half-precision type: `storage.rs`.
    macro_rules! half_routes {
        ($t:ty) => {
            impl SealedElement for $t {
                fn forward_nd<K: Kind, D: Dimension>(
                    p: &Affine<$t>,
                    x: &ArrayRef<$t, D>,
                    want_stats: bool,
                ) -> Result<WithStats<$t, D>, NormError> {
                    storage::half_forward_nd::<K, $t, D>(p, x, want_stats)
                }
                fn forward_into_nd<K: Kind, D: Dimension>(
                    p: &Affine<$t>,
                    x: &ArrayRef<$t, D>,
                    out: &mut ArrayRef<$t, D>,
                ) -> Result<(), NormError> {
                    storage::half_forward_into_nd::<K, $t, D>(p, x, out)
                }
                fn forward_slice<K: Kind>(
                    how: ForcedPath,
                    p: &Affine<$t>,
                    x: &[$t],
                    out: &mut [$t],
                    stats: [Option<&mut [f32]>; 2],
                ) -> Result<(), NormError> {
                    storage::half_forward_slice::<K, $t>(how, p, x, out, stats)
                }
                fn add_rows<K: Kind>(
                    how: ForcedPath,
                    p: &Affine<$t>,
                    xr: (&[$t], Option<&[$t]>),
                    h: &mut [$t],
                    out: &mut [$t],
                ) {
                    storage::half_add_rows::<K, $t>(how, p, xr, h, out)
                }
            }
        };
    }
    half_routes!(half::bf16);
    half_routes!(half::f16);
}

/// A type a norm can store its input, output, weight and bias in (sealed): `f32`, `f64`,
/// [`half::bf16`] or [`half::f16`].
///
/// Each has an accumulation type [`Acc`](Element::Acc) the kernels compute in: the type
/// itself for `f32` and `f64` (the [`Float`] types), `f32` for `bf16` and `f16`, whose
/// rows are widened to f32 exactly, normalized by the f32 kernels, and rounded back
/// once per output (to nearest, ties to even). The norm's eps and the statistics of a
/// half-precision forward are kept in `Acc`.
///
/// # Example
/// ```
/// use half::bf16;
/// use norm_core::Element;
///
/// assert_eq!(bf16::from_f32(1.5).to_acc(), 1.5f32);
/// assert_eq!(<bf16 as Element>::from_acc(1.0 + 1.0 / 256.0), bf16::ONE); // a tie: to even
/// assert_eq!(2.5f64.to_acc(), 2.5);
/// ```
pub trait Element:
    Copy + Debug + Default + PartialEq + Send + Sync + 'static + sealed::SealedElement
{
    /// The type the kernels compute in for this element type.
    type Acc: Float;
    /// Widens to the accumulation type, exactly.
    fn to_acc(self) -> Self::Acc;
    /// Rounds from the accumulation type to nearest, ties to even (NaN stays NaN,
    /// values beyond the largest finite one become ±∞).
    fn from_acc(v: Self::Acc) -> Self;
}

impl Element for f32 {
    type Acc = f32;
    #[inline(always)]
    fn to_acc(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_acc(v: f32) -> f32 {
        v
    }
}

impl Element for f64 {
    type Acc = f64;
    #[inline(always)]
    fn to_acc(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_acc(v: f64) -> f64 {
        v
    }
}

impl Element for half::bf16 {
    type Acc = f32;
    #[inline(always)]
    fn to_acc(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn from_acc(v: f32) -> Self {
        half::bf16::from_f32(v)
    }
}

impl Element for half::f16 {
    type Acc = f32;
    #[inline(always)]
    fn to_acc(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn from_acc(v: f32) -> Self {
        half::f16::from_f32(v)
    }
}

/// An element type the norms accept: `f32` or `f64` (sealed).
///
/// Kernels accumulate in the element type itself (f32 lanes for f32, f64 for f64);
/// the precision guarantees come from shifted statistics (a one-pass variance only where
/// its cancellation is bounded, else a second, centred pass) and blocked totals, not
/// from a wider accumulator.
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
    + Element<Acc = Self>
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
