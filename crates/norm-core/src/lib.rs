//! `norm-core`: fast LayerNorm and RMSNorm forward kernels for `f32`/`f64` (and `bf16`/`f16`
//! storage computed in f32), accurate to
//! the bounds in `docs/math.md`, over
//! ndarray arrays of any rank and layout or plain row-major slices. No I/O, no randomness.
//!
//! ```
//! use ndarray::Array3;
//! use norm_core::{LayerNorm, RmsNorm};
//!
//! let x = Array3::<f32>::from_shape_fn((2, 4, 64), |(b, l, d)| (b + l) as f32 + d as f32 * 0.1);
//! let ln = LayerNorm::<f32>::new(64)?.forward(&x)?;   // (B, L, D) -> (B, L, D)
//! let rms = RmsNorm::<f32>::new(64)?.forward(&x)?;
//! assert_eq!(ln.shape(), rms.shape());
//! # Ok::<(), norm_core::NormError>(())
//! ```
//!
//! Numerics: variance is never computed as `E[x²] − E[x]²`; rows are shifted by a value
//! of their own range (the mean of their first eight values) before summing, and the
//! variance is taken from the shifted first pass only where that cancels at most one
//! bit (else a second, centred pass), so the output error does not grow with the offset:
//! f32 rows like 1e4 + N(0, 1) or 1e5 + N(0, 0.1) agree with f64 to ~1e-6 (the vector
//! accumulators are folded into blocked totals, so rounding error grows only very slowly
//! with d); rows whose squares overflow (|x| ~ 1e30 in f32) or underflow are redone
//! with scaling. See `docs/math.md`.
//!
//! Speed: the row kernels pick AVX-512F, AVX2+FMA or a portable path at run time
//! ([`KernelPath::detected`]; no `-C target-cpu=native` needed). With the `rayon`
//! feature (on by default) large batches are split into fixed row blocks on the current
//! rayon pool, bit-identical for any thread count. `add_forward*` fuse the residual add
//! of a Pre-Norm block with the norm. Measured ratios: `docs/performance.md`.

#[doc(hidden)]
pub mod ceiling;
mod convert;
#[doc(hidden)]
pub mod dispatch;
mod error;
mod float;
mod forward;
mod fused;
mod kernels;
mod layer_norm;
mod params;
pub mod reference;
mod rms_norm;
mod rows;
#[doc(hidden)]
pub mod simd;
mod storage;

pub use convert::Half;
pub use error::NormError;
pub use float::{Element, Float};
/// The `half` crate's types, re-exported: `bf16` and `f16` are storage types of the norms.
pub use half::{bf16, f16};
pub use layer_norm::{LayerNorm, LayerNormStats};
pub use rms_norm::{RmsNorm, RmsNormStats};
pub use simd::KernelPath;
