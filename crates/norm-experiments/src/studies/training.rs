//! Study 9 — Pre-Norm vs Post-Norm in training: small causal language models (learned
//! token embedding, sinusoidal positions, a causal stack of each placement, untied head)
//! trained with AdamW on a synthetic order-2 Markov language whose loss floor is known
//! exactly (`crate::markov`), over a learning-rate sweep with and without warmup and
//! several seeds. Measured: training and validation loss against the floor, the largest
//! learning rate each placement trains at, per-block gradient norms over the first steps,
//! and LayerNorm vs RMSNorm under Pre-Norm. Runs are spread over the rayon pool; each
//! run is sequential, so results do not depend on the number of threads.

use std::time::Instant;

use ndarray::Array2;
use norm_autograd::{
    AdamW, AdamWConfig, Decay, LanguageModel, LmConfig, NormKind, Placement, Schedule, StackConfig,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::common::require_at_least;
use crate::format::sig;

/// Three significant digits.
fn s3(v: f64) -> String {
    sig(v, 3)
}
use crate::markov::MarkovChain;
use crate::result::{BarSeries, Figure, Finding, LineSeries, LineStyle, Panel, PanelContent, Scale};
use crate::study::{Study, StudyConfig};
use crate::{Reference, StudyError, study_rng};

/// Stable id.
pub const ID: &str = "training";

/// Configuration of the training study.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Vocabulary size of the synthetic language.
    pub vocab: usize,
    /// Peakedness of the Markov chain's transition rows (`softmax(sharpness · z)`).
    pub sharpness: f64,
    /// Placements compared (`post-norm`, `pre-norm`, `deepnorm`).
    pub placements: Vec<String>,
    /// Blocks per model.
    pub n_layers: usize,
    /// Model width D.
    pub d_model: usize,
    /// Attention heads (must divide `d_model`).
    pub n_heads: usize,
    /// Hidden width of each feed-forward network.
    pub d_ff: usize,
    /// Tokens predicted per sequence.
    pub seq_len: usize,
    /// Sequences per training batch (fresh samples every step).
    pub batch: usize,
    /// Training steps per run.
    pub steps: usize,
    /// Linear warmup steps of the "with warmup" runs (the others start at the peak).
    pub warmup_steps: usize,
    /// Peak learning rates swept (increasing).
    pub lrs: Vec<f64>,
    /// The learning rate whose loss curves the figure shows (one of `lrs`).
    pub headline_lr: f64,
    /// Seeds per (placement, learning rate, warmup) cell.
    pub seeds: usize,
    /// Held-out validation sequences.
    pub val_sequences: usize,
    /// Validation every this many steps (and after the last).
    pub eval_every: usize,
    /// Steps whose per-block gradient norms are recorded (from step 0).
    pub grad_steps: usize,
}

impl Default for Config {
    /// 6 blocks, D = 32, 4 heads, d_ff = 64; 32 tokens; sequences of 16, batch 8; 200
    /// steps; warmup 40; learning rates 1e-3 … 1e-1; 3 seeds; Post-, Pre-Norm, DeepNorm.
    fn default() -> Self {
        Self {
            vocab: 32,
            sharpness: 3.0,
            placements: vec!["post-norm".into(), "pre-norm".into(), "deepnorm".into()],
            n_layers: 6,
            d_model: 32,
            n_heads: 4,
            d_ff: 64,
            seq_len: 16,
            batch: 8,
            steps: 200,
            warmup_steps: 40,
            lrs: vec![1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
            headline_lr: 1e-2,
            seeds: 3,
            val_sequences: 64,
            eval_every: 20,
            grad_steps: 10,
        }
    }
}

impl StudyConfig for Config {
    /// 2 blocks, D = 8, 2 heads; 8 tokens; sequences of 6, batch 4; 40 steps; two
    /// learning rates; 1 seed.
    fn small() -> Self {
        Self {
            vocab: 8,
            sharpness: 3.0,
            placements: vec!["post-norm".into(), "pre-norm".into()],
            n_layers: 2,
            d_model: 8,
            n_heads: 2,
            d_ff: 16,
            seq_len: 6,
            batch: 4,
            steps: 40,
            warmup_steps: 10,
            lrs: vec![3e-2, 3.0],
            headline_lr: 3e-2,
            seeds: 1,
            val_sequences: 16,
            eval_every: 10,
            grad_steps: 3,
        }
    }

    fn validate(&self) -> Result<(), StudyError> {
        let bad = |field, value: String, reason| StudyError::InvalidConfig {
            study: ID,
            field,
            value,
            reason,
        };
        require_at_least(ID, "vocab", self.vocab, 2, "a language needs at least 2 tokens")?;
        if !(self.sharpness.is_finite() && self.sharpness >= 0.0) {
            return Err(bad(
                "sharpness",
                self.sharpness.to_string(),
                "must be finite and >= 0",
            ));
        }
        require_at_least(
            ID,
            "placements",
            self.placements.len(),
            1,
            "need at least one placement",
        )?;
        for p in &self.placements {
            if placement(p, 1).is_none() {
                return Err(bad(
                    "placements",
                    p.clone(),
                    "each one of post-norm, pre-norm, deepnorm",
                ));
            }
        }
        require_at_least(ID, "n_layers", self.n_layers, 1, "need at least one block")?;
        require_at_least(ID, "d_model", self.d_model, 2, "a norm needs at least 2 features")?;
        require_at_least(ID, "n_heads", self.n_heads, 1, "need at least one head")?;
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(bad("n_heads", self.n_heads.to_string(), "must divide d_model"));
        }
        require_at_least(ID, "d_ff", self.d_ff, 1, "need a hidden layer")?;
        require_at_least(ID, "seq_len", self.seq_len, 1, "need at least one prediction")?;
        require_at_least(ID, "batch", self.batch, 1, "need at least one sequence")?;
        require_at_least(ID, "steps", self.steps, 1, "need at least one step")?;
        require_at_least(
            ID,
            "lrs",
            self.lrs.len(),
            2,
            "a sweep needs at least 2 learning rates",
        )?;
        if !self.lrs.iter().all(|l| l.is_finite() && *l > 0.0) || !self.lrs.windows(2).all(|w| w[0] < w[1]) {
            return Err(bad(
                "lrs",
                format!("{:?}", self.lrs),
                "finite, > 0 and strictly increasing",
            ));
        }
        if !self.lrs.contains(&self.headline_lr) {
            return Err(bad(
                "headline_lr",
                self.headline_lr.to_string(),
                "must be one of lrs",
            ));
        }
        require_at_least(ID, "seeds", self.seeds, 1, "need at least one seed")?;
        require_at_least(
            ID,
            "val_sequences",
            self.val_sequences,
            1,
            "need held-out sequences",
        )?;
        require_at_least(ID, "eval_every", self.eval_every, 1, "must be >= 1")?;
        require_at_least(ID, "grad_steps", self.grad_steps, 1, "record at least step 0")?;
        if self.grad_steps > self.steps {
            return Err(bad("grad_steps", self.grad_steps.to_string(), "at most steps"));
        }
        Ok(())
    }
}

/// The placement named `name` for an `n`-block stack (DeepNorm with its constants for `n`).
fn placement(name: &str, n: usize) -> Option<Placement> {
    [
        Placement::PostNorm,
        Placement::PreNorm,
        Placement::deepnorm_for(n),
    ]
    .into_iter()
    .find(|p| p.name() == name)
}

/// One training run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Placement name.
    pub placement: String,
    /// Norm kind name.
    pub norm: String,
    /// Peak learning rate.
    pub lr: f64,
    /// Whether the run warmed up linearly.
    pub warmup: bool,
    /// Seed index.
    pub seed: usize,
    /// Steps at which validation was measured.
    pub val_steps: Vec<usize>,
    /// Validation loss (nats/token) at those steps.
    pub val_loss: Vec<f64>,
    /// Validation excess over the true model on the same tokens (nats/token): the mean
    /// of `−log q(x) + log p(x | context)`, an unbiased estimate of loss − floor.
    pub val_excess: Vec<f64>,
    /// Mean training loss over each evaluation window (ending at `val_steps[1..]`).
    pub train_loss: Vec<f64>,
    /// Final validation loss.
    pub final_val: f64,
    /// Non-finite loss, or final validation loss above the unigram entropy.
    pub diverged: bool,
    /// Per-block gradient norms (input side first) at steps `0..grad_steps`.
    pub block_grad_norms: Vec<Vec<f64>>,
    /// Wall-clock seconds per training step (shared cores: for timings only).
    pub step_seconds: f64,
}

/// One (placement, learning rate, warmup) cell over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// Placement name.
    pub placement: String,
    /// Peak learning rate.
    pub lr: f64,
    /// With warmup.
    pub warmup: bool,
    /// Seeds that diverged.
    pub diverged: usize,
    /// Median over seeds of the final validation excess (infinite if any diverged to a
    /// non-finite loss).
    pub median_excess: f64,
}

/// Largest stable learning rate of a placement.
#[derive(Debug, Clone, Serialize)]
pub struct Stability {
    /// Placement name.
    pub placement: String,
    /// Largest lr (of the sweep) at which no seed diverged, without warmup.
    pub max_lr_no_warmup: Option<f64>,
    /// The same with warmup.
    pub max_lr_warmup: Option<f64>,
}

/// Everything the study measures.
#[derive(Debug, Clone, Serialize)]
pub struct Measurements {
    /// Entropy rate H of the language (nats/token).
    pub entropy_rate: f64,
    /// Unigram entropy (nats/token): what a context-free model reaches.
    pub unigram_entropy: f64,
    /// Lowest achievable mean loss over a sequence (first prediction has one token of context).
    pub floor: f64,
    /// Every Post/Pre/DeepNorm run with LayerNorm.
    pub runs: Vec<Run>,
    /// Pre-Norm RMSNorm runs at the headline lr (with and without warmup).
    pub rms_runs: Vec<Run>,
    /// Per cell of the sweep.
    pub cells: Vec<Cell>,
    /// Per placement.
    pub stability: Vec<Stability>,
    /// FLOPs of one training step (forward + backward ≈ 3 × forward matmul FLOPs).
    pub step_flops: f64,
    /// Wall-clock seconds of the whole measurement.
    pub wall_seconds: f64,
}

/// Matmul FLOPs of one forward pass over `n = batch·seq_len` tokens.
fn forward_flops(c: &Config) -> f64 {
    let (n, d, f, v) = (
        (c.batch * c.seq_len) as f64,
        c.d_model as f64,
        c.d_ff as f64,
        c.vocab as f64,
    );
    let l = c.seq_len as f64;
    let per_block = 8.0 * n * d * d + 4.0 * n * l * d + 4.0 * n * d * f;
    c.n_layers as f64 * per_block + 2.0 * n * d * v
}

/// Splits sampled sequences of `seq_len + 1` tokens into inputs and targets.
fn batch_of(
    chain: &MarkovChain,
    n: usize,
    len: usize,
    rng: &mut ChaCha8Rng,
) -> (Array2<usize>, Array2<usize>) {
    let seqs: Vec<Vec<usize>> = (0..n).map(|_| chain.sample(len + 1, rng)).collect();
    (
        Array2::from_shape_fn((n, len), |(b, l)| seqs[b][l]),
        Array2::from_shape_fn((n, len), |(b, l)| seqs[b][l + 1]),
    )
}

/// `−log p(target | context)` under the true chain, averaged over the batch (the first
/// prediction of each sequence uses `P(x₁ | x₀) = π(x₀, x₁) / p(x₀)`).
fn true_loss(chain: &MarkovChain, inputs: &Array2<usize>, targets: &Array2<usize>) -> f64 {
    let v = chain.vocab();
    let uni = chain.unigram();
    let mut s = 0.0;
    for (x, t) in inputs.rows().into_iter().zip(targets.rows()) {
        for l in 0..x.len() {
            let p = if l == 0 {
                chain.stationary_pairs()[x[0] * v + t[0]] / uni[x[0]]
            } else {
                chain.row(x[l - 1], x[l])[t[l]]
            };
            s -= p.ln();
        }
    }
    s / inputs.len() as f64
}

struct Setup<'a> {
    cfg: &'a Config,
    chain: &'a MarkovChain,
    val: &'a (Array2<usize>, Array2<usize>),
    val_true: f64,
    seed: u64,
}

/// A run's identity.
#[derive(Clone, Copy)]
struct Job<'a> {
    placement: &'a str,
    norm: NormKind,
    lr: f64,
    warmup: bool,
    seed: usize,
}

fn train(s: &Setup<'_>, job: Job<'_>) -> Result<Run, StudyError> {
    let c = s.cfg;
    let p = placement(job.placement, c.n_layers).ok_or_else(|| StudyError::InvalidConfig {
        study: ID,
        field: "placements",
        value: job.placement.to_owned(),
        reason: "unknown placement",
    })?;
    let mut stack = StackConfig::new(c.n_layers, c.d_model, c.n_heads, p, job.norm);
    stack.block.d_ff = c.d_ff;
    let lm_cfg = LmConfig {
        vocab: c.vocab,
        max_len: c.seq_len,
        stack,
        embed_std: 1.0,
    };
    // Same initial draws and data for every placement of a seed.
    let base = s.seed ^ (job.seed as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut init_rng = ChaCha8Rng::seed_from_u64(base);
    let mut data_rng = ChaCha8Rng::seed_from_u64(base ^ 0xda7a);
    let mut lm = LanguageModel::<f32>::new(&lm_cfg, &mut init_rng)?;
    let mut opt = AdamW::new(AdamWConfig::default())?;
    let schedule = Schedule {
        peak: job.lr,
        warmup: if job.warmup { c.warmup_steps } else { 0 },
        decay: Decay::Constant,
    };
    let mut run = Run {
        placement: job.placement.to_owned(),
        norm: job.norm.name().to_owned(),
        lr: job.lr,
        warmup: job.warmup,
        seed: job.seed,
        val_steps: Vec::new(),
        val_loss: Vec::new(),
        val_excess: Vec::new(),
        train_loss: Vec::new(),
        final_val: f64::NAN,
        diverged: false,
        block_grad_norms: Vec::new(),
        step_seconds: 0.0,
    };
    let eval = |lm: &LanguageModel<f32>, run: &mut Run, step: usize| -> Result<bool, StudyError> {
        let l = f64::from(lm.loss(s.val.0.view(), s.val.1.view())?);
        run.val_steps.push(step);
        run.val_loss.push(l);
        run.val_excess.push(l - s.val_true);
        Ok(l.is_finite())
    };
    eval(&lm, &mut run, 0)?;
    let (mut window, mut in_window) = (0.0, 0usize);
    let mut seconds = 0.0;
    let mut ok = true;
    for step in 0..c.steps {
        let (x, y) = batch_of(s.chain, c.batch, c.seq_len, &mut data_rng);
        let t0 = Instant::now();
        let (loss, grads) = lm.loss_and_grads(x.view(), y.view())?;
        if step < c.grad_steps {
            run.block_grad_norms.push(grads.block_grad_norms());
        }
        opt.step(&mut lm, &grads, schedule.lr(step))?;
        seconds += t0.elapsed().as_secs_f64();
        window += f64::from(loss);
        in_window += 1;
        if !loss.is_finite() {
            ok = false;
        }
        if (step + 1) % c.eval_every == 0 || step + 1 == c.steps || !ok {
            run.train_loss.push(window / in_window as f64);
            (window, in_window) = (0.0, 0);
            ok &= eval(&lm, &mut run, step + 1)?;
        }
        if !ok {
            break;
        }
    }
    run.step_seconds = seconds / c.steps as f64;
    run.final_val = *run.val_loss.last().unwrap_or(&f64::NAN);
    run.diverged = !ok || !run.final_val.is_finite() || run.final_val > s.chain.unigram_entropy();
    Ok(run)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The study (registry type).
pub struct Training;

impl Study for Training {
    const ID: &'static str = ID;
    const TITLE: &'static str = "Pre-Norm vs Post-Norm in Training";
    const SUMMARY: &'static str =
        "Post-Norm needs warmup and a smaller learning rate; Pre-Norm trains without either.";

    type Config = Config;
    type Measurements = Measurements;

    fn measure(cfg: &Config, seed: u64) -> Result<Measurements, StudyError> {
        let start = Instant::now();
        let mut rng = study_rng(seed, ID);
        let chain = MarkovChain::random(cfg.vocab, cfg.sharpness, &mut rng)?;
        let val = batch_of(&chain, cfg.val_sequences, cfg.seq_len, &mut rng);
        let val_true = true_loss(&chain, &val.0, &val.1);
        let run_seed: u64 = rng.random();
        let setup = Setup {
            cfg,
            chain: &chain,
            val: &val,
            val_true,
            seed: run_seed,
        };
        let mut jobs = Vec::new();
        for p in &cfg.placements {
            for &lr in &cfg.lrs {
                for warmup in [false, true] {
                    for s in 0..cfg.seeds {
                        jobs.push(Job {
                            placement: p,
                            norm: NormKind::LayerNorm,
                            lr,
                            warmup,
                            seed: s,
                        });
                    }
                }
            }
        }
        for warmup in [false, true] {
            for s in 0..cfg.seeds {
                jobs.push(Job {
                    placement: "pre-norm",
                    norm: NormKind::RmsNorm,
                    lr: cfg.headline_lr,
                    warmup,
                    seed: s,
                });
            }
        }
        let total = jobs.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        // Progress on stderr (never in an output file); each run is sequential, so the
        // results do not depend on how rayon spreads the runs.
        let results: Vec<Run> = jobs
            .par_iter()
            .map(|&job| {
                let r = train(&setup, job)?;
                let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                eprintln!(
                    "  training: run {k}/{total} ({} {} lr {} {}): {}",
                    r.placement,
                    r.norm,
                    r.lr,
                    if r.warmup { "warmup" } else { "no warmup" },
                    if r.diverged {
                        "diverged".to_owned()
                    } else {
                        format!("val {:.3}", r.final_val)
                    },
                );
                Ok(r)
            })
            .collect::<Result<_, StudyError>>()?;
        let (rms_runs, runs): (Vec<Run>, Vec<Run>) = results
            .into_iter()
            .partition(|r| r.norm == NormKind::RmsNorm.name());
        let floor = chain.sequence_floor(cfg.seq_len);
        let mut cells = Vec::new();
        for p in &cfg.placements {
            for &lr in &cfg.lrs {
                for warmup in [false, true] {
                    let rs: Vec<&Run> = runs
                        .iter()
                        .filter(|r| &r.placement == p && r.lr == lr && r.warmup == warmup)
                        .collect();
                    let excess: Vec<f64> = rs
                        .iter()
                        .map(|r| *r.val_excess.last().unwrap_or(&f64::NAN))
                        .map(|e| if e.is_finite() { e } else { f64::INFINITY })
                        .collect();
                    cells.push(Cell {
                        placement: p.clone(),
                        lr,
                        warmup,
                        diverged: rs.iter().filter(|r| r.diverged).count(),
                        median_excess: median(excess),
                    });
                }
            }
        }
        let stability = cfg
            .placements
            .iter()
            .map(|p| {
                let max = |w: bool| {
                    cells
                        .iter()
                        .filter(|c| &c.placement == p && c.warmup == w && c.diverged == 0)
                        .map(|c| c.lr)
                        .fold(None, |a: Option<f64>, l| Some(a.map_or(l, |a| a.max(l))))
                };
                Stability {
                    placement: p.clone(),
                    max_lr_no_warmup: max(false),
                    max_lr_warmup: max(true),
                }
            })
            .collect();
        Ok(Measurements {
            entropy_rate: chain.entropy_rate(),
            unigram_entropy: chain.unigram_entropy(),
            floor,
            runs,
            rms_runs,
            cells,
            stability,
            step_flops: 3.0 * forward_flops(cfg),
            wall_seconds: start.elapsed().as_secs_f64(),
        })
    }

    fn findings(cfg: &Config, m: &Measurements) -> Vec<Finding> {
        let lr_text = |l: Option<f64>| l.map_or("none of the swept rates".to_owned(), s3);
        let get = |p: &str| m.stability.iter().find(|s| s.placement == p);
        let mut out = Vec::new();
        let (post, pre) = (get("post-norm"), get("pre-norm"));
        let headline = match (post, pre) {
            (Some(a), Some(b)) => {
                let ratio = match (a.max_lr_no_warmup, b.max_lr_no_warmup) {
                    (Some(x), Some(y)) => y / x,
                    (None, Some(_)) => f64::INFINITY,
                    _ => f64::NAN,
                };
                let verdict = if ratio > 1.0 {
                    "Pre-Norm trains at a larger learning rate than Post-Norm without warmup".to_owned()
                } else if ratio == 1.0 {
                    "Post-Norm does not fail earlier than Pre-Norm in this sweep without warmup".to_owned()
                } else {
                    "Pre-Norm does not train at a larger learning rate than Post-Norm here".to_owned()
                };
                Some(
                    Finding::new(
                        "max_stable_lr_ratio_pre_over_post",
                        if ratio.is_finite() { ratio } else { 0.0 },
                        "x",
                        format!(
                            "Without warmup, the largest swept learning rate at which all {} seeds train \
                             is {} for Post-Norm and {} for Pre-Norm ({} blocks, AdamW, {} steps): {verdict}. \
                             With {} warmup steps: {} and {}.",
                            cfg.seeds,
                            lr_text(a.max_lr_no_warmup),
                            lr_text(b.max_lr_no_warmup),
                            cfg.n_layers,
                            cfg.steps,
                            cfg.warmup_steps,
                            lr_text(a.max_lr_warmup),
                            lr_text(b.max_lr_warmup),
                        ),
                    )
                    .labelled("Largest stable learning rate without warmup, Pre-Norm over Post-Norm")
                    .cite(&[Reference::Xiong2020, Reference::Liu2020])
                    .summary(),
                )
            }
            _ => None,
        };
        let has_headline = headline.is_some();
        out.extend(headline);
        for s in &m.stability {
            let f = Finding::new(
                &format!("max_stable_lr_no_warmup_{}", s.placement),
                s.max_lr_no_warmup.unwrap_or(0.0),
                "",
                format!(
                    "{}: largest stable swept learning rate {} without warmup, {} with {} warmup steps \
                     (stable = every seed's final validation loss finite and below the unigram entropy {}).",
                    s.placement,
                    lr_text(s.max_lr_no_warmup),
                    lr_text(s.max_lr_warmup),
                    cfg.warmup_steps,
                    s3(m.unigram_entropy),
                ),
            )
            .labelled(&format!("Largest stable learning rate, {}", s.placement));
            out.push(if has_headline || !out.is_empty() {
                f
            } else {
                f.summary()
            });
        }
        for c in m.cells.iter().filter(|c| c.lr == cfg.headline_lr) {
            out.push(
                Finding::new(
                    &format!(
                        "excess_{}_{}",
                        c.placement,
                        if c.warmup { "warmup" } else { "no_warmup" }
                    ),
                    if c.median_excess.is_finite() { c.median_excess } else { -1.0 },
                    "nats/token",
                    format!(
                        "{} at lr {} {}: final validation loss exceeds the floor by {} nats/token (median of {} seeds; {} diverged; floor {} , entropy rate H = {}).",
                        c.placement,
                        s3(c.lr),
                        if c.warmup { "with warmup" } else { "without warmup" },
                        if c.median_excess.is_finite() { s3(c.median_excess) } else { "∞".to_owned() },
                        cfg.seeds,
                        c.diverged,
                        s3(m.floor),
                        s3(m.entropy_rate),
                    ),
                )
                .labelled(&format!(
                    "Final excess loss, {} {}",
                    c.placement,
                    if c.warmup { "with warmup" } else { "without warmup" }
                )),
            );
        }
        for p in &cfg.placements {
            let g0 = grad0(m, p);
            if let (Some(first), Some(last)) = (g0.first(), g0.last()) {
                out.push(
                    Finding::new(
                        &format!("grad0_last_over_first_{p}"),
                        last / first,
                        "x",
                        format!(
                            "{p}: at step 0 the gradient norm of the last block is {} times that of the first (mean over seeds).",
                            s3(last / first)
                        ),
                    )
                    .labelled(&format!("Step-0 gradient, last block over first, {p}"))
                    .cite(&[Reference::Xiong2020]),
                );
            }
        }
        let rms_excess = |w: bool| {
            median(
                m.rms_runs
                    .iter()
                    .filter(|r| r.warmup == w)
                    .map(|r| *r.val_excess.last().unwrap_or(&f64::NAN))
                    .collect(),
            )
        };
        if let Some(c) = m
            .cells
            .iter()
            .find(|c| c.placement == "pre-norm" && c.lr == cfg.headline_lr && c.warmup)
        {
            let r = rms_excess(true);
            out.push(
                Finding::new(
                    "pre_norm_rms_minus_layernorm_excess",
                    r - c.median_excess,
                    "nats/token",
                    format!(
                        "Pre-Norm with warmup at lr {}: final excess loss {} with RMSNorm vs {} with LayerNorm (medians of {} seeds).",
                        s3(cfg.headline_lr),
                        s3(r),
                        s3(c.median_excess),
                        cfg.seeds
                    ),
                )
                .labelled("Pre-Norm final excess loss, RMSNorm minus LayerNorm")
                .cite(&[Reference::ZhangSennrich2019]),
            );
        }
        if !out.iter().any(|f| f.summary)
            && let Some(f) = out.first_mut()
        {
            f.summary = true;
        }
        out
    }

    fn explanation(cfg: &Config, m: &Measurements) -> Vec<String> {
        vec![
            format!(
                "Each model is a causal decoder-only transformer ({} blocks, width {}, {} heads, feed-forward {}) \
                 with a learned token embedding, sinusoidal positions and an untied output head, trained with AdamW \
                 (β = 0.9, 0.999, no weight decay, no clipping) on fresh batches of {} sequences of {} tokens.",
                cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.batch, cfg.seq_len
            ),
            format!(
                "The language is a random order-2 Markov chain over {} tokens. Its entropy rate H = {} nats/token is \
                 the loss of a perfect model; since the first prediction of a sequence sees one token only, the best \
                 mean loss is {} (the floor). A model that ignores context reaches the unigram entropy {}; a run \
                 counts as diverged if its final validation loss is above that or not finite.",
                cfg.vocab,
                s3(m.entropy_rate),
                s3(m.floor),
                s3(m.unigram_entropy)
            ),
            format!(
                "Validation uses {} held-out sequences; excess loss is measured against the true chain's loss on the \
                 same tokens. The sweep covers learning rates {:?}, each with no warmup and with {} linear warmup steps, \
                 {} seeds each.",
                cfg.val_sequences, cfg.lrs, cfg.warmup_steps, cfg.seeds
            ),
        ]
    }

    fn figure(cfg: &Config, m: &Measurements) -> Figure {
        let mut panels = Vec::new();
        for warmup in [false, true] {
            let mut series = Vec::new();
            for p in &cfg.placements {
                let rs: Vec<&Run> = m
                    .runs
                    .iter()
                    .filter(|r| &r.placement == p && r.lr == cfg.headline_lr && r.warmup == warmup)
                    .collect();
                if let Some(first) = rs.first() {
                    let n = rs.iter().map(|r| r.val_excess.len()).min().unwrap_or(0);
                    let y: Vec<f64> = (0..n)
                        .map(|k| {
                            (rs.iter().map(|r| r.val_excess[k]).sum::<f64>() / rs.len() as f64).max(1e-3)
                        })
                        .filter(|v| v.is_finite())
                        .collect();
                    let x = first.val_steps[..y.len()].iter().map(|&s| s as f64).collect();
                    series.push(LineSeries {
                        label: p.clone(),
                        x,
                        y,
                        style: LineStyle::Markers,
                    });
                }
            }
            let unigram_gap = (m.unigram_entropy - m.floor).max(1e-3);
            series.push(LineSeries {
                label: "unigram entropy − floor".into(),
                x: vec![0.0, cfg.steps as f64],
                y: vec![unigram_gap, unigram_gap],
                style: LineStyle::Dashed,
            });
            panels.push(Panel {
                title: format!(
                    "Validation excess loss, lr {} {}",
                    s3(cfg.headline_lr),
                    if warmup { "with warmup" } else { "without warmup" }
                ),
                x_label: "step".into(),
                y_label: "loss − floor (nats/token, mean of seeds, ≥ 1e-3)".into(),
                content: PanelContent::Lines {
                    series,
                    x_scale: Scale::Linear,
                    y_scale: Scale::Log,
                },
            });
        }
        for warmup in [false, true] {
            let mut diverged = Vec::new();
            let series = cfg
                .placements
                .iter()
                .map(|p| BarSeries {
                    label: p.clone(),
                    values: cfg
                        .lrs
                        .iter()
                        .map(|&lr| {
                            let c = m
                                .cells
                                .iter()
                                .find(|c| &c.placement == p && c.lr == lr && c.warmup == warmup);
                            match c {
                                Some(c) if c.diverged == 0 => c.median_excess.max(1e-3),
                                Some(c) => {
                                    diverged.push(format!("{p} @ {}", s3(lr)));
                                    let _ = c;
                                    (m.unigram_entropy - m.floor).max(1e-3)
                                }
                                None => 1e-3,
                            }
                        })
                        .collect(),
                })
                .collect();
            panels.push(Panel {
                title: format!(
                    "Final excess loss by lr, {} (diverged, drawn at the unigram level: {})",
                    if warmup { "with warmup" } else { "without warmup" },
                    if diverged.is_empty() {
                        "none".to_owned()
                    } else {
                        diverged.join(", ")
                    }
                ),
                x_label: "peak learning rate".into(),
                y_label: "final validation loss − floor (median of seeds)".into(),
                content: PanelContent::Bars {
                    categories: cfg.lrs.iter().map(|&l| s3(l)).collect(),
                    series,
                    y_scale: Scale::Log,
                },
            });
        }
        let series = cfg
            .placements
            .iter()
            .map(|p| {
                let g = grad0(m, p);
                LineSeries {
                    label: p.clone(),
                    x: (1..=g.len()).map(|i| i as f64).collect(),
                    y: g,
                    style: LineStyle::Markers,
                }
            })
            .collect();
        panels.push(Panel {
            title: "Per-block gradient norm at step 0".into(),
            x_label: "block (1 = input side)".into(),
            y_label: "‖dL/dθ_block‖ (mean of seeds)".into(),
            content: PanelContent::Lines {
                series,
                x_scale: Scale::Linear,
                y_scale: Scale::Log,
            },
        });
        Figure {
            title: "Pre-Norm vs Post-Norm in training".into(),
            panels,
            columns: 2,
        }
    }

    fn timings(m: &Measurements) -> Vec<Finding> {
        let step = |norm: &str, rs: &[Run]| {
            median(
                rs.iter()
                    .filter(|r| r.placement == "pre-norm" && r.norm == norm)
                    .map(|r| r.step_seconds)
                    .collect(),
            )
        };
        let (ln, rms) = (
            step(NormKind::LayerNorm.name(), &m.runs),
            step(NormKind::RmsNorm.name(), &m.rms_runs),
        );
        vec![
            Finding::new(
                "step_ms_pre_norm_layernorm",
                ln * 1e3,
                "ms",
                format!(
                    "Pre-Norm LayerNorm training step: {} ms ({} GFLOP/s; runs share the cores).",
                    s3(ln * 1e3),
                    s3(m.step_flops / ln / 1e9)
                ),
            ),
            Finding::new(
                "step_ms_pre_norm_rmsnorm",
                rms * 1e3,
                "ms",
                format!(
                    "Pre-Norm RMSNorm training step: {} ms ({} GFLOP/s).",
                    s3(rms * 1e3),
                    s3(m.step_flops / rms / 1e9)
                ),
            ),
            Finding::new(
                "wall_seconds",
                m.wall_seconds,
                "s",
                format!("The study's measurements took {} s.", s3(m.wall_seconds)),
            ),
        ]
    }
}

/// Mean over seeds of the per-block gradient norms at step 0 for placement `p`.
fn grad0(m: &Measurements, p: &str) -> Vec<f64> {
    let g: Vec<&Vec<f64>> = m
        .runs
        .iter()
        .filter(|r| {
            r.placement == p && !r.warmup && r.lr == m.runs.iter().map(|r| r.lr).fold(f64::INFINITY, f64::min)
        })
        .filter_map(|r| r.block_grad_norms.first())
        .collect();
    let Some(first) = g.first() else {
        return Vec::new();
    };
    (0..first.len())
        .map(|i| g.iter().map(|v| v[i]).sum::<f64>() / g.len() as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::check_shape;

    #[test]
    fn small_study_measures_and_post_or_pre_diverge_at_a_huge_lr() {
        let cfg = Config::small();
        let m = Training::measure(&cfg, 42).unwrap();
        assert!(m.entropy_rate < m.floor && m.floor < m.unigram_entropy);
        assert_eq!(m.runs.len(), 2 * 2 * 2);
        assert_eq!(m.rms_runs.len(), 2);
        // lr 3e-2 with 40 steps learns: validation loss falls below its start; Pre-Norm
        // also gets below the unigram entropy (not diverged).
        for r in m.runs.iter().filter(|r| r.lr == 3e-2) {
            assert!(r.final_val < r.val_loss[0], "{} {:?}", r.placement, r.val_loss);
            assert_eq!(r.diverged, r.final_val >= m.unigram_entropy);
            assert_eq!(r.block_grad_norms.len(), 3);
            assert!(r.block_grad_norms[0].iter().all(|g| g.is_finite() && *g > 0.0));
        }
        let pre = m.stability.iter().find(|s| s.placement == "pre-norm").unwrap();
        assert_eq!(pre.max_lr_no_warmup, Some(3e-2));
        // lr 3 moves every weight by ~3 per Adam step: every seed of every placement fails.
        assert!(
            m.cells
                .iter()
                .filter(|c| c.lr == 3.0)
                .all(|c| c.diverged == cfg.seeds)
        );
        assert!(m.cells.iter().any(|c| c.diverged > 0));
    }

    #[test]
    fn shape_and_determinism_independent_of_threads() {
        let cfg = Config::small();
        let r = Training::run(&cfg, 7).unwrap();
        check_shape(&r, ID);
        let one = |n: usize| {
            let m = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
                .install(|| Training::measure(&cfg, 7).unwrap());
            m.runs
                .iter()
                .map(|r| (r.val_loss.clone(), r.block_grad_norms.clone()))
                .collect::<Vec<_>>()
        };
        let a = one(1);
        assert_eq!(format!("{a:?}"), format!("{:?}", one(3)));
    }

    #[test]
    fn invalid_configs_are_refused() {
        let ok = Config::small();
        let cases: [fn(&mut Config); 8] = [
            |c| c.vocab = 1,
            |c| c.placements = vec!["side-norm".into()],
            |c| c.n_heads = 3,
            |c| c.lrs = vec![1e-2, 1e-3],
            |c| c.headline_lr = 0.5,
            |c| c.seeds = 0,
            |c| c.grad_steps = 1000,
            |c| c.sharpness = f64::NAN,
        ];
        for f in cases {
            let mut c = ok.clone();
            f(&mut c);
            assert!(
                matches!(c.validate(), Err(StudyError::InvalidConfig { .. })),
                "{c:?}"
            );
        }
        assert!(ok.validate().is_ok());
    }
}
