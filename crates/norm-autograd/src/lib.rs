//! `norm-autograd`: hand-written backward passes for LayerNorm and RMSNorm (on top of
//! `norm-core`'s forward kernels), the small layers needed to train with them (linear,
//! activations, MLP, multi-head attention, transformer blocks, a causal language model),
//! losses, SGD, AdamW with a warmup schedule, and a
//! finite-difference gradient checker. No tape, no graph: every layer has
//! `forward(&x) -> (y, cache)` and `backward(&cache, &dy) -> (dx, grads)`.
//!
//! ```
//! use ndarray::Array2;
//! use norm_core::LayerNorm;
//! use norm_autograd::layer_norm_backward;
//!
//! let ln = LayerNorm::<f32>::new(64)?;
//! let x = Array2::<f32>::from_shape_fn((8, 64), |(i, j)| (i as f32) + (j as f32).sin());
//! let (y, stats) = ln.forward_with_stats(&x)?;
//! let (dx, grads) = layer_norm_backward(&ln, &x, &stats, &y)?; // dL/dy = y for L = ½‖y‖²
//! assert_eq!(dx.shape(), x.shape());
//! assert_eq!(grads.dgamma.len(), 64);
//! # Ok::<(), norm_autograd::GradError>(())
//! ```
//!
//! # Recipes
//!
//! Learn gamma and beta by gradient descent (the affine part restores a scale and shift
//! that normalization removed):
//!
//! ```
//! use ndarray::Array2;
//! use norm_autograd::{mse_loss, sgd_step, Norm, NormKind};
//!
//! let x = Array2::<f64>::from_shape_fn((64, 4), |(i, j)| ((i * 4 + j) as f64 * 0.77).sin() * (1.0 + i as f64));
//! let mut norm = Norm::<f64>::new(NormKind::LayerNorm, 4)?;
//! let (xhat, _) = norm.forward(&x)?;
//! let target = xhat.mapv(|v| 2.0 * v + 0.5); // gamma = 2, beta = 0.5
//! for _ in 0..300 {
//!     let (y, cache) = norm.forward(&x)?;
//!     let (_, dy) = mse_loss(&y, &target)?;
//!     let (_, grads) = norm.backward(&cache, &dy)?;
//!     sgd_step(&mut norm, &grads, 0.5)?;
//! }
//! assert!(norm.weight().iter().all(|g| (g - 2.0).abs() < 1e-6));
//! assert!(norm.bias().unwrap().iter().all(|b| (b - 0.5).abs() < 1e-6));
//! # Ok::<(), norm_autograd::GradError>(())
//! ```
//!
//! Per-layer gradient flow through a deep tanh MLP (`dL/dh_i`, `dL/dW_i`, and the
//! spread of `h_i`):
//!
//! ```
//! use ndarray::Array2;
//! use rand::SeedableRng;
//! use norm_autograd::{l2_norm, Activation, Mlp, MlpConfig, NormKind};
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
//! let mut cfg = MlpConfig::deep(64, 50, Activation::Tanh, 1.0);
//! cfg.norm = Some(NormKind::RmsNorm);
//! let mlp = Mlp::<f64>::new(&cfg, &mut rng)?;
//! let x = Array2::<f64>::from_shape_fn((32, 64), |(i, j)| ((i * 64 + j) as f64 * 0.37).sin());
//! let (y, cache) = mlp.forward(&x)?;
//! let (_, grads) = mlp.backward(&cache, &y)?; // L = ½‖y‖²
//! let dh: Vec<f64> = grads.d_outputs.iter().map(|g| l2_norm(g.view().into_dyn())).collect();
//! let dw: Vec<f64> = grads.layers.iter().map(|l| l2_norm(l.linear.weight.view().into_dyn())).collect();
//! let spread: Vec<f64> = cache.outputs.iter().map(|h| h.std(0.0)).collect();
//! assert_eq!((dh.len(), dw.len(), spread.len()), (50, 50, 50));
//! # Ok::<(), norm_autograd::GradError>(())
//! ```
//!
//! Determinism: dgamma/dbeta are summed in fixed blocks of [`REDUCTION_BLOCK_ROWS`] rows
//! combined in block order, so they do not depend on how the rows are split.
//!
//! Speed: the norm backward kernels pick AVX-512F, AVX2+FMA or a portable path at run
//! time (no `-C target-cpu=native` needed); with the `rayon` feature (on by default)
//! batches of at least 256 KiB are split across the current rayon pool in whole
//! reduction blocks, bit-identical for any thread count. Measured ratios:
//! `docs/performance.md`, section "Backward".
//! Derivations: `docs/math.md`, section "Backward".

mod activation;
mod attention;
mod error;
mod ffn;
mod gemm;
mod gradcheck;
mod kernels;
mod linear;
mod lm;
mod loss;
mod mlp;
mod norm_backward;
mod norm_layer;
mod optim;
mod params;
pub mod reference;
mod seq;
mod transformer;

pub use activation::{Activation, ActivationCache};
pub use attention::{AttentionCache, AttentionGrads, MultiHeadAttention};
pub use error::GradError;
pub use ffn::{FeedForward, FeedForwardCache, FeedForwardGrads};
pub use gradcheck::{GradCheck, GradChecker};
pub use linear::{Init, Linear, LinearCache, LinearGrads};
pub use lm::{Embedding, EmbeddingGrads, LanguageModel, LmCache, LmConfig, LmGrads};
pub use loss::{
    mse_loss, softmax_cross_entropy, softmax_cross_entropy_into, softmax_rows, softmax_rows_into,
};
pub use mlp::{Mlp, MlpCache, MlpConfig, MlpGrads, MlpLayer, MlpLayerCache, MlpLayerGrads};
pub use norm_backward::{
    GradSlices, NormGrads, REDUCTION_BLOCK_ROWS, layer_norm_backward, layer_norm_backward_half,
    layer_norm_backward_half_slice, layer_norm_backward_into, layer_norm_backward_slice, rms_norm_backward,
    rms_norm_backward_half, rms_norm_backward_half_slice, rms_norm_backward_into, rms_norm_backward_slice,
};
pub use norm_layer::{Norm, NormCache, NormKind, NormStats};
pub use optim::{AdamW, AdamWConfig, Decay, Schedule, StepStats};
pub use params::{Gradients, Module, l2_norm, sgd_step};
pub use transformer::{
    BlockCache, BlockConfig, BlockGrads, Placement, StackCache, StackConfig, StackGrads, TransformerBlock,
    TransformerStack,
};

#[doc(hidden)]
pub mod __private {
    //! Test and bench hooks: the backward slice driver with a forced kernel path
    //! ([`ForcedPath`], norm-core's) and a chosen split of the row blocks ([`Sweep`]).
    pub use crate::norm_backward::{
        BackwardInput, PAR_MIN_BYTES, Saved, Sweep, backward_half_slice_on, backward_slice_on,
    };
    pub use norm_core::dispatch::ForcedPath;
    pub use norm_core::simd::{Stores, stream_min_bytes};
}
