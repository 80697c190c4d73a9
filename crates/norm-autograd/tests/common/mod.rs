//! Shared test helpers: seeded random arrays and the random-projection loss
//! `L = Σ r ⊙ y` whose gradient with respect to `y` is `r`.

#![allow(dead_code)]

use ndarray::{Array, ArrayRef, Dimension, IntoDimension};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded generator.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// An array of the given shape with entries uniform in `[lo, hi)`.
pub fn uniform<Sh: IntoDimension>(rng: &mut ChaCha8Rng, shape: Sh, lo: f64, hi: f64) -> Array<f64, Sh::Dim> {
    let dim = shape.into_dimension();
    Array::from_shape_simple_fn(dim, || lo + (hi - lo) * rng.random::<f64>())
}

/// `Σ r ⊙ y`.
pub fn project<D: Dimension>(r: &ArrayRef<f64, D>, y: &ArrayRef<f64, D>) -> f64 {
    r.iter().zip(y.iter()).map(|(a, b)| a * b).sum()
}

/// Gradient-check tolerance required by the issue.
pub const TOL: f64 = 1e-6;
