//! Per-study random streams: ChaCha8 (a documented, version-stable stream) seeded from
//! the run seed and the study id, so study order and threading never change a number.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// FNV-1a over the id's bytes: a stable, dependency-free string hash.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The generator for study `id` under run seed `seed`.
///
/// ```
/// use rand::RngExt;
/// let a: f64 = norm_experiments::study_rng(42, "epsilon").random();
/// let b: f64 = norm_experiments::study_rng(42, "epsilon").random();
/// assert_eq!(a, b);
/// ```
pub fn study_rng(seed: u64, id: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ fnv1a(id).rotate_left(17))
}
