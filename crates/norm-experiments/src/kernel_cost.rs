//! What each norm-core forward kernel does per row, counted from its code: passes over
//! the row and vector arithmetic operations per element. Deterministic numbers for the
//! page ("RMSNorm: simpler, fewer ops"); the measured time ratio is a timing and lives
//! in study 3's timings, not here. No measurement and no kernel call here.

use serde::Serialize;

/// The work of one row kernel, per element of the row (the per-row scalar work — a
/// division, a square root, a few multiplies — is left out: it does not grow with the row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KernelCost {
    /// Passes that read the row: the reductions, then the write pass.
    pub passes: usize,
    /// Of these, the reductions before the write pass.
    pub reduction_passes: usize,
    /// Vector arithmetic operations per element over all passes (add, sub, mul and
    /// fused multiply-add each count one; loads and stores are not counted).
    pub ops_per_element: usize,
}

// The counts below describe norm-core's forward row kernel as of main at e5b74e7 (one
// body for both norms, `Row<K, F>::run` in crates/norm-core/src/kernels/mod.rs): the
// first pass `first_pass` (kernels/stats.rs: `sum_shifted` for LayerNorm, `sum_sq` for
// RmsNorm), `moments` (LayerNorm only: `sum_sq` over `Centered`), and the write pass
// `write` (kernels/write.rs, with `center`). They count the vector body of each loop;
// the scalar tails do the same operations one element at a time. If those kernels
// change, recount here: the numbers are read from the code, not measured.

/// `LayerNorm` forward (`Row<Layer, F>`):
///
/// ```text
/// pass 1  sum_shifted       acc += x − shift                      sub, add        2
/// pass 2  sum_sq(Centered)  d = (x − shift) − m;  acc = d·d + acc  sub, sub, fma   3
/// pass 3  write (center)    y = ((x − shift) − m)·(rstd·w) [+ b]  sub, sub, mul,
///                                                                 mul (or fma)    4
/// ```
///
/// 3 passes, 9 operations per element, with or without bias.
pub const LAYER_NORM: KernelCost = KernelCost {
    passes: 3,
    reduction_passes: 2,
    ops_per_element: 9,
};

/// `RmsNorm` forward (`Row<Rms, F>`):
///
/// ```text
/// pass 1  sum_sq   acc = x·x + acc          fma                 1
/// pass 2  write    y = x·(rrms·w) [+ b]     mul, mul (or fma)   2
/// ```
///
/// 2 passes, 3 operations per element, with or without bias.
pub const RMS_NORM: KernelCost = KernelCost {
    passes: 2,
    reduction_passes: 1,
    ops_per_element: 3,
};

/// The two kernels side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KernelCosts {
    /// [`LAYER_NORM`].
    pub layer_norm: KernelCost,
    /// [`RMS_NORM`].
    pub rms_norm: KernelCost,
}

/// Both counts.
pub const KERNEL_COSTS: KernelCosts = KernelCosts {
    layer_norm: LAYER_NORM,
    rms_norm: RMS_NORM,
};
