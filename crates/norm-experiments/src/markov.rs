//! A synthetic language with a known loss floor: a random order-2 Markov chain over a
//! small vocabulary, its exact stationary distribution (power iteration over the
//! pair-state chain, f64), entropy rate, unigram entropy and the best achievable mean
//! cross-entropy over a sequence, and a sampler. Used by the training study; no study
//! lives here.

use rand::{Rng, RngExt};
use rand_distr::{Distribution, StandardNormal};

use crate::StudyError;

/// An order-2 Markov chain over `V` tokens: `P(x_t = c | x_{t−2} = a, x_{t−1} = b)`.
///
/// # Example
/// ```
/// use rand::SeedableRng;
/// use norm_experiments::markov::MarkovChain;
///
/// let chain = MarkovChain::random(8, 3.0, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1))?;
/// let (h, h1) = (chain.entropy_rate(), chain.unigram_entropy());
/// assert!(0.0 < h && h < h1 && h1 <= 8f64.ln());
/// # Ok::<(), norm_experiments::StudyError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MarkovChain {
    vocab: usize,
    /// Row `a·V + b` holds `P(· | a, b)`; `V²` rows of `V`.
    probs: Vec<f64>,
    /// Stationary distribution of the pair state `(x_{t−1}, x_t)`, index `a·V + b`.
    stationary: Vec<f64>,
}

/// `−Σ p ln p` (terms with p = 0 contribute 0).
pub fn entropy(p: &[f64]) -> f64 {
    -p.iter().filter(|&&q| q > 0.0).map(|&q| q * q.ln()).sum::<f64>()
}

fn invalid(field: &'static str, value: String, allowed: &'static str) -> StudyError {
    StudyError::InvalidConfig {
        study: "markov",
        field,
        value,
        reason: allowed,
    }
}

impl MarkovChain {
    /// A chain whose rows are `softmax(sharpness · z)` with `z ~ N(0, 1)` i.i.d.: larger
    /// `sharpness` gives more peaked rows (lower entropy rate). Every transition has
    /// positive probability, so the chain is ergodic.
    ///
    /// # Errors
    /// [`StudyError::InvalidConfig`] for `vocab < 2` or a negative / non-finite sharpness.
    pub fn random<R: Rng + ?Sized>(vocab: usize, sharpness: f64, rng: &mut R) -> Result<Self, StudyError> {
        if vocab < 2 {
            return Err(invalid("vocab", vocab.to_string(), "at least 2"));
        }
        if !(sharpness.is_finite() && sharpness >= 0.0) {
            return Err(invalid("sharpness", sharpness.to_string(), "finite and >= 0"));
        }
        let mut probs = Vec::with_capacity(vocab * vocab * vocab);
        for _ in 0..vocab * vocab {
            let z: Vec<f64> = (0..vocab)
                .map(|_| sharpness * Distribution::<f64>::sample(&StandardNormal, &mut *rng))
                .collect();
            let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let e: Vec<f64> = z.iter().map(|&v| (v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            probs.extend(e.iter().map(|v| v / s));
        }
        Self::from_probs(vocab, probs)
    }

    /// A chain from explicit transition rows (`V²` rows of `V`, row `a·V + b`).
    ///
    /// # Errors
    /// [`StudyError::InvalidConfig`] if the length is wrong, a probability is negative or
    /// not finite, a row does not sum to 1 (within 1e-9), or the chain has no unique
    /// stationary distribution reachable by power iteration (it does not converge).
    pub fn from_probs(vocab: usize, probs: Vec<f64>) -> Result<Self, StudyError> {
        if vocab < 2 {
            return Err(invalid("vocab", vocab.to_string(), "at least 2"));
        }
        if probs.len() != vocab.pow(3) {
            return Err(invalid(
                "probs",
                format!("{} entries", probs.len()),
                "vocab³ entries",
            ));
        }
        for row in probs.chunks(vocab) {
            let s: f64 = row.iter().sum();
            if row.iter().any(|p| !(p.is_finite() && *p >= 0.0)) || (s - 1.0).abs() > 1e-9 {
                return Err(invalid(
                    "probs",
                    format!("{row:?}"),
                    "rows of non-negative numbers summing to 1",
                ));
            }
        }
        let stationary = power_iteration(vocab, &probs).ok_or_else(|| {
            invalid(
                "probs",
                "a periodic or reducible chain".into(),
                "an ergodic chain",
            )
        })?;
        Ok(Self {
            vocab,
            probs,
            stationary,
        })
    }

    /// Vocabulary size V.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// `P(· | a, b)`.
    pub fn row(&self, a: usize, b: usize) -> &[f64] {
        let k = (a * self.vocab + b) * self.vocab;
        &self.probs[k..k + self.vocab]
    }

    /// Stationary probability of the pair `(x_{t−1}, x_t) = (a, b)`, index `a·V + b`.
    pub fn stationary_pairs(&self) -> &[f64] {
        &self.stationary
    }

    /// Stationary token distribution `p(b) = Σ_a π(a, b)`.
    pub fn unigram(&self) -> Vec<f64> {
        let v = self.vocab;
        (0..v)
            .map(|b| (0..v).map(|a| self.stationary[a * v + b]).sum())
            .collect()
    }

    /// The entropy rate (nats/token): the cross-entropy a perfect model reaches once it
    /// has seen two tokens of context.
    ///
    /// ```text
    /// H = Σ_{a,b} π(a, b) · H(P(· | a, b))
    /// ```
    pub fn entropy_rate(&self) -> f64 {
        let v = self.vocab;
        (0..v * v)
            .map(|k| self.stationary[k] * entropy(&self.probs[k * v..(k + 1) * v]))
            .sum()
    }

    /// The unigram entropy `H(p)`: what a model that ignores context reaches.
    pub fn unigram_entropy(&self) -> f64 {
        entropy(&self.unigram())
    }

    /// `H(x_1 | x_0) = H(π) − H(p)`: the best loss on the first prediction of a
    /// sequence, which has one token of context.
    pub fn first_step_entropy(&self) -> f64 {
        entropy(&self.stationary) - self.unigram_entropy()
    }

    /// The lowest achievable mean cross-entropy when predicting tokens `1..=len` of a
    /// stationary sequence from their prefixes: the first prediction has one token of
    /// context, the other `len − 1` have two.
    ///
    /// ```text
    /// floor(len) = (H(x_1|x_0) + (len − 1)·H) / len
    /// ```
    pub fn sequence_floor(&self, len: usize) -> f64 {
        let n = len.max(1) as f64;
        (self.first_step_entropy() + (n - 1.0) * self.entropy_rate()) / n
    }

    /// A stationary sequence of `len` tokens (the first pair drawn from π).
    pub fn sample<R: Rng + ?Sized>(&self, len: usize, rng: &mut R) -> Vec<usize> {
        let mut out = Vec::with_capacity(len.max(2));
        self.sample_into(len, rng, &mut out);
        out
    }

    /// [`sample`](Self::sample) into `out` (cleared first; the same draws, and no
    /// allocation once `out` has the capacity).
    pub fn sample_into<R: Rng + ?Sized>(&self, len: usize, rng: &mut R, out: &mut Vec<usize>) {
        let v = self.vocab;
        let k = draw(&self.stationary, rng.random());
        out.clear();
        out.extend([k / v, k % v]);
        while out.len() < len {
            let (a, b) = (out[out.len() - 2], out[out.len() - 1]);
            out.push(draw(self.row(a, b), rng.random()));
        }
        out.truncate(len);
    }
}

/// The index whose cumulative probability first exceeds `u` (the last one on rounding).
fn draw(p: &[f64], u: f64) -> usize {
    let mut c = 0.0;
    for (i, &q) in p.iter().enumerate() {
        c += q;
        if u < c {
            return i;
        }
    }
    p.len() - 1
}

/// The stationary distribution of the pair chain `(a, b) → (b, c)` with probability
/// `P(c | a, b)`, by power iteration from uniform; `None` if it has not converged (L1
/// change below 1e-14) within 100 000 steps.
fn power_iteration(v: usize, probs: &[f64]) -> Option<Vec<f64>> {
    let mut pi = vec![1.0 / (v * v) as f64; v * v];
    let mut next = vec![0.0; v * v];
    for _ in 0..100_000 {
        next.fill(0.0);
        for a in 0..v {
            for b in 0..v {
                let w = pi[a * v + b];
                let row = &probs[(a * v + b) * v..(a * v + b + 1) * v];
                for (c, &p) in row.iter().enumerate() {
                    next[b * v + c] += w * p;
                }
            }
        }
        let s: f64 = next.iter().sum();
        next.iter_mut().for_each(|x| *x /= s);
        let change: f64 = pi.iter().zip(&next).map(|(a, b)| (a - b).abs()).sum();
        std::mem::swap(&mut pi, &mut next);
        if change < 1e-14 {
            return Some(pi);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Exact joint entropy of `n` consecutive stationary tokens by enumerating all `Vⁿ`
    /// sequences.
    fn block_entropy(c: &MarkovChain, n: usize) -> f64 {
        let v = c.vocab();
        let mut h = 0.0;
        for code in 0..v.pow(n as u32) {
            let seq: Vec<usize> = (0..n).map(|i| code / v.pow(i as u32) % v).collect();
            if n == 1 {
                h -= c.unigram()[seq[0]] * c.unigram()[seq[0]].ln();
                continue;
            }
            let mut p = c.stationary_pairs()[seq[0] * v + seq[1]];
            for t in 2..n {
                p *= c.row(seq[t - 2], seq[t - 1])[seq[t]];
            }
            if p > 0.0 {
                h -= p * p.ln();
            }
        }
        h
    }

    #[test]
    fn entropy_rate_matches_brute_force_block_entropies() {
        let c = MarkovChain::random(3, 1.5, &mut ChaCha8Rng::seed_from_u64(4)).unwrap();
        // For a stationary order-2 chain, H(X_1..X_n) − H(X_1..X_{n−1}) = H for n ≥ 3;
        // this holds only if π is stationary and the rate is right.
        for n in 3..8 {
            let d = block_entropy(&c, n) - block_entropy(&c, n - 1);
            assert!(
                (d - c.entropy_rate()).abs() < 1e-12,
                "n = {n}: {d} vs {}",
                c.entropy_rate()
            );
        }
        assert!((block_entropy(&c, 2) - block_entropy(&c, 1) - c.first_step_entropy()).abs() < 1e-12);
        assert!((block_entropy(&c, 1) - c.unigram_entropy()).abs() < 1e-12);
    }

    #[test]
    fn entropy_rate_matches_a_sampled_estimate() {
        let c = MarkovChain::random(3, 2.0, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        let seq = c.sample(200_000, &mut ChaCha8Rng::seed_from_u64(6));
        let nll: Vec<f64> = seq.windows(3).map(|w| -c.row(w[0], w[1])[w[2]].ln()).collect();
        // Batch means over 100 batches (the terms are correlated along the chain).
        let means: Vec<f64> = nll
            .chunks(nll.len() / 100)
            .take(100)
            .map(|b| b.iter().sum::<f64>() / b.len() as f64)
            .collect();
        let m = means.iter().sum::<f64>() / 100.0;
        let sd = (means.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 99.0).sqrt() / 10.0;
        assert!(
            (m - c.entropy_rate()).abs() < 5.0 * sd,
            "{m} ± {sd} vs {}",
            c.entropy_rate()
        );
        // Empirical pair frequencies against π.
        let mut counts = [0.0; 9];
        seq.windows(2).for_each(|w| counts[w[0] * 3 + w[1]] += 1.0);
        for (k, n) in counts.iter().enumerate() {
            assert!(
                (n / (seq.len() - 1) as f64 - c.stationary_pairs()[k]).abs() < 0.01,
                "pair {k}"
            );
        }
    }

    #[test]
    fn uniform_rows_give_log_v() {
        let c = MarkovChain::random(5, 0.0, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        assert!((c.entropy_rate() - 5f64.ln()).abs() < 1e-12);
        assert!((c.unigram_entropy() - 5f64.ln()).abs() < 1e-12);
        assert!((c.sequence_floor(16) - 5f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn peaked_rows_lower_the_rate_and_the_floor_lies_between() {
        let c = MarkovChain::random(32, 3.0, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let (h, h1) = (c.entropy_rate(), c.unigram_entropy());
        assert!(h < 0.6 * h1, "H = {h}, unigram = {h1}");
        let f = c.sequence_floor(16);
        assert!(h < f && f < c.first_step_entropy());
        assert!((c.stationary_pairs().iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn refuses_bad_chains() {
        let mut r = ChaCha8Rng::seed_from_u64(0);
        assert!(MarkovChain::random(1, 1.0, &mut r).is_err());
        assert!(MarkovChain::random(4, f64::NAN, &mut r).is_err());
        assert!(MarkovChain::from_probs(2, vec![0.5; 7]).is_err());
        assert!(MarkovChain::from_probs(2, vec![0.6; 8]).is_err());
        assert!(MarkovChain::from_probs(2, vec![-0.5, 1.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]).is_err());
    }

    #[test]
    fn sampling_is_seeded() {
        let c = MarkovChain::random(6, 2.0, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
        let a = c.sample(50, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(a, c.sample(50, &mut ChaCha8Rng::seed_from_u64(3)));
        assert_eq!(a.len(), 50);
        assert!(a.iter().all(|&t| t < 6));
    }
}
