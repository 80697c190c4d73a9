//! Study 9 — Pre-Norm vs Post-Norm in training: small causal language models (learned
//! token embedding, sinusoidal positions, a causal stack of each placement, untied head)
//! trained with AdamW on a synthetic order-2 Markov language whose loss floor is known
//! exactly (`crate::markov`), over a learning-rate sweep with and without warmup and
//! several seeds. Measured: training and validation loss against the floor, the largest
//! learning rate each placement trains at, per-block gradient norms over the first steps,
//! and LayerNorm vs RMSNorm under Pre-Norm. Runs are spread over the rayon pool; each
//! run is sequential, so results do not depend on the number of threads, and reuses one
//! cache, one set of gradients and its batch buffers, so a step allocates nothing after
//! the first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ndarray::Array2;
use norm_autograd::{
    AdamW, AdamWConfig, Decay, LanguageModel, LmCache, LmConfig, LmGrads, NormKind, Placement, Schedule,
    StackConfig,
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
use crate::result::{BarSeries, Figure, Finding, Heatmap, LineSeries, LineStyle, Panel, PanelContent, Scale};
use crate::study::{Progress, ProgressFn, Study, StudyConfig, no_progress};
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
    /// Placements compared (`post-norm`, `pre-norm`, `peri-norm`, `deepnorm`).
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
    /// Seeds per cell at `headline_lr` (the headline comparison, loss curves, RMSNorm runs).
    pub seeds: usize,
    /// Seeds per cell at the other learning rates of the sweep.
    pub sweep_seeds: usize,
    /// Held-out validation sequences.
    pub val_sequences: usize,
    /// Validation every this many steps (and after the last).
    pub eval_every: usize,
    /// Steps whose per-block gradient norms are recorded (from step 0).
    pub grad_steps: usize,
}

impl Default for Config {
    /// 6 blocks, D = 32, 4 heads, d_ff = 64; an 8-token language (sharpness 3);
    /// sequences of 16, batch 8; 300 steps; warmup 60; learning rates 1e-3 … 3e-2, the
    /// headline 1e-2 with 3 seeds, the others 1; Post-, Pre-, Peri-Norm and DeepNorm.
    ///
    /// Chosen by measurement: at 32 tokens an order-2 chain has 1024 contexts, and 200
    /// steps of 128 tokens did not get past the unigram statistics; at 8 tokens (64
    /// contexts) Pre-Norm closes most of the gap to H in 300 steps, and Post-Norm without
    /// warmup stalls at 1e-2, where it trains with warmup.
    fn default() -> Self {
        Self {
            vocab: 8,
            sharpness: 3.0,
            placements: vec![
                "post-norm".into(),
                "pre-norm".into(),
                "peri-norm".into(),
                "deepnorm".into(),
            ],
            n_layers: 6,
            d_model: 32,
            n_heads: 4,
            d_ff: 64,
            seq_len: 16,
            batch: 8,
            steps: 300,
            warmup_steps: 60,
            lrs: vec![1e-3, 3e-3, 1e-2, 3e-2],
            headline_lr: 1e-2,
            seeds: 3,
            sweep_seeds: 1,
            val_sequences: 64,
            eval_every: 25,
            grad_steps: 10,
        }
    }
}

impl StudyConfig for Config {
    /// 2 blocks, D = 16, 2 heads; 8 tokens; sequences of 8, batch 8; 60 steps; two
    /// learning rates; 1 seed.
    fn small() -> Self {
        Self {
            vocab: 8,
            sharpness: 3.0,
            placements: vec!["post-norm".into(), "pre-norm".into()],
            n_layers: 2,
            d_model: 16,
            n_heads: 2,
            d_ff: 32,
            seq_len: 8,
            batch: 8,
            steps: 60,
            warmup_steps: 10,
            lrs: vec![1e-2, 3.0],
            headline_lr: 1e-2,
            seeds: 1,
            sweep_seeds: 1,
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
                    "each one of post-norm, pre-norm, peri-norm, deepnorm",
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
        require_at_least(ID, "sweep_seeds", self.sweep_seeds, 1, "need at least one seed")?;
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
        Placement::PeriNorm,
        Placement::deepnorm_for(n),
    ]
    .into_iter()
    .find(|p| p.name() == name)
}

/// The share of the gap between the unigram entropy (no context) and the entropy rate H
/// that a run's final validation loss must close to count as trained. A model that learns
/// only token frequencies sits at the unigram entropy, and its loss on held-out
/// sequences scatters around it by sampling noise; a tenth of the gap sits well clear of
/// that noise (and of the runs that learned the context, which close over half of it).
pub const LEARNED_FRACTION: f64 = 0.1;

/// The largest final validation loss that counts as trained.
fn trained_below(unigram: f64, h: f64) -> f64 {
    unigram - LEARNED_FRACTION * (unigram - h)
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The final validation loss closed at least [`LEARNED_FRACTION`] of the gap between
    /// the unigram entropy and the entropy rate: the model used the context.
    Trained,
    /// Finite, but the final validation loss closed less than [`LEARNED_FRACTION`] of that
    /// gap: the model learned little beyond how often each token occurs (it did not learn;
    /// nothing blew up).
    Stalled,
    /// A loss became non-finite, or a validation loss rose above twice its value at step 0.
    BlewUp,
}

impl Outcome {
    /// Plain words for the page.
    pub fn words(self) -> &'static str {
        match self {
            Outcome::Trained => "trained",
            Outcome::Stalled => "stalled at the unigram loss",
            Outcome::BlewUp => "blew up",
        }
    }
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
    /// Mean training loss over each evaluation window (ending at `val_steps[1..]`).
    pub train_loss: Vec<f64>,
    /// Final validation loss.
    pub final_val: f64,
    /// How the run ended.
    pub outcome: Outcome,
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
    /// Seeds run.
    pub seeds: usize,
    /// Seeds that stalled at the unigram loss.
    pub stalled: usize,
    /// Seeds that blew up.
    pub blew_up: usize,
    /// Median over seeds of the final excess validation loss `loss − H` (a run that blew
    /// up counts as +∞).
    pub median_excess: f64,
}

impl Cell {
    /// Every seed trained.
    pub fn trained(&self) -> bool {
        self.stalled == 0 && self.blew_up == 0
    }

    /// How the cell failed (blowing up outranks stalling), `None` if it trained.
    pub fn failure(&self) -> Option<Outcome> {
        if self.blew_up > 0 {
            Some(Outcome::BlewUp)
        } else if self.stalled > 0 {
            Some(Outcome::Stalled)
        } else {
            None
        }
    }
}

/// Largest stable learning rate of a placement.
#[derive(Debug, Clone, Serialize)]
pub struct Stability {
    /// Placement name.
    pub placement: String,
    /// Largest swept lr at which every seed trained, without warmup.
    pub max_lr_no_warmup: Option<f64>,
    /// The same with warmup.
    pub max_lr_warmup: Option<f64>,
    /// The smallest swept lr at which a seed failed without warmup, and how.
    pub first_failure_no_warmup: Option<(f64, Outcome)>,
    /// The same with warmup.
    pub first_failure_warmup: Option<(f64, Outcome)>,
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
    /// The true chain's own loss on the validation tokens (nats/token).
    pub val_true_loss: f64,
    /// Every LayerNorm run of the sweep.
    pub runs: Vec<Run>,
    /// Pre-Norm RMSNorm runs at the headline lr (with and without warmup).
    pub rms_runs: Vec<Run>,
    /// Only when Post-Norm trained at every swept lr without warmup: Post-Norm and
    /// Pre-Norm runs (no warmup, one seed) at 3×, 10×, 30× the largest swept lr, stopping
    /// at the first at which Post-Norm fails.
    pub beyond: Vec<Run>,
    /// Per cell of the sweep.
    pub cells: Vec<Cell>,
    /// Per placement.
    pub stability: Vec<Stability>,
    /// FLOPs of one training step (forward + backward ≈ 3 × forward matmul FLOPs).
    pub step_flops: f64,
    /// Wall-clock seconds of the whole measurement.
    pub wall_seconds: f64,
}

impl Measurements {
    /// The cell of `placement` at `lr`, with or without warmup.
    pub fn cell(&self, placement: &str, lr: f64, warmup: bool) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.placement == placement && c.lr == lr && c.warmup == warmup)
    }

    /// The stability of `placement`.
    pub fn stability_of(&self, placement: &str) -> Option<&Stability> {
        self.stability.iter().find(|s| s.placement == placement)
    }
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
    let mut batch = Batch::new(n, len);
    batch.sample(chain, rng);
    (batch.x, batch.y)
}

/// A training batch whose buffers are reused from step to step.
struct Batch {
    x: Array2<usize>,
    y: Array2<usize>,
    seq: Vec<usize>,
}

impl Batch {
    fn new(n: usize, len: usize) -> Self {
        Self {
            x: Array2::zeros((n, len)),
            y: Array2::zeros((n, len)),
            seq: Vec::with_capacity(len + 1),
        }
    }

    /// Fresh sequences of `len + 1` tokens, split into inputs and targets (in place).
    fn sample(&mut self, chain: &MarkovChain, rng: &mut ChaCha8Rng) {
        let len = self.x.ncols();
        for (mut x, mut y) in self.x.rows_mut().into_iter().zip(self.y.rows_mut()) {
            chain.sample_into(len + 1, rng, &mut self.seq);
            x.iter_mut().zip(&self.seq).for_each(|(o, &t)| *o = t);
            y.iter_mut().zip(&self.seq[1..]).for_each(|(o, &t)| *o = t);
        }
    }
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
    // Same initial draws and data for every placement and learning rate of a seed.
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
        train_loss: Vec::new(),
        final_val: f64::NAN,
        outcome: Outcome::Trained,
        block_grad_norms: Vec::new(),
        step_seconds: 0.0,
    };
    // One cache and one set of gradient buffers for the whole run (and one cache for
    // validation): after the first step a step allocates nothing.
    let (mut cache, mut grads, mut val_cache) = (LmCache::default(), LmGrads::empty(), LmCache::default());
    let mut batch = Batch::new(c.batch, c.seq_len);
    let mut eval = |lm: &LanguageModel<f32>, run: &mut Run, step: usize| -> Result<f64, StudyError> {
        let l = f64::from(lm.loss_into(s.val.0.view(), s.val.1.view(), &mut val_cache)?);
        run.val_steps.push(step);
        run.val_loss.push(l);
        Ok(l)
    };
    let start = eval(&lm, &mut run, 0)?;
    let (mut window, mut in_window) = (0.0, 0usize);
    let (mut seconds, mut steps_run) = (0.0, 0usize);
    let mut blew_up = false;
    for step in 0..c.steps {
        batch.sample(s.chain, &mut data_rng);
        let t0 = Instant::now();
        let loss = lm.loss_and_grads_into(batch.x.view(), batch.y.view(), &mut cache, &mut grads)?;
        if step < c.grad_steps {
            run.block_grad_norms.push(grads.block_grad_norms());
        }
        opt.step(&mut lm, &grads, schedule.lr(step))?;
        seconds += t0.elapsed().as_secs_f64();
        steps_run += 1;
        window += f64::from(loss);
        in_window += 1;
        blew_up |= !loss.is_finite();
        if (step + 1) % c.eval_every == 0 || step + 1 == c.steps || blew_up {
            run.train_loss.push(window / in_window as f64);
            (window, in_window) = (0.0, 0);
            let v = eval(&lm, &mut run, step + 1)?;
            blew_up |= !(v.is_finite() && v <= 2.0 * start);
        }
        if blew_up {
            break;
        }
    }
    run.step_seconds = seconds / steps_run.max(1) as f64;
    run.final_val = *run.val_loss.last().unwrap_or(&f64::NAN);
    run.outcome = if blew_up {
        Outcome::BlewUp
    } else if run.final_val >= trained_below(s.chain.unigram_entropy(), s.chain.entropy_rate()) {
        Outcome::Stalled
    } else {
        Outcome::Trained
    };
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

/// Final excess validation loss `loss − H` of a run (+∞ if it blew up).
fn excess(r: &Run, h: f64) -> f64 {
    if r.outcome == Outcome::BlewUp || !r.final_val.is_finite() {
        f64::INFINITY
    } else {
        r.final_val - h
    }
}

/// Runs `jobs` over the rayon pool (each run sequential, so the numbers do not depend
/// on how the runs are spread), reporting each finished run to `progress` as number
/// `offset + k` of `total`.
fn run_all(
    setup: &Setup<'_>,
    jobs: &[Job<'_>],
    progress: ProgressFn<'_>,
    offset: usize,
    total: usize,
) -> Result<Vec<Run>, StudyError> {
    let done = AtomicUsize::new(offset);
    jobs.par_iter()
        .map(|&job| {
            let r = train(setup, job)?;
            let k = done.fetch_add(1, Ordering::Relaxed) + 1;
            let what = format!(
                "{} {} lr {} {}: {}",
                r.placement,
                r.norm,
                s3(r.lr),
                if r.warmup { "with warmup" } else { "without warmup" },
                r.outcome.words(),
            );
            progress(Progress {
                done: k,
                total: total.max(k),
                what: &what,
            });
            Ok(r)
        })
        .collect()
}

/// The sweep's cells.
fn cells_of(cfg: &Config, runs: &[Run], h: f64) -> Vec<Cell> {
    let mut cells = Vec::new();
    for p in &cfg.placements {
        for &lr in &cfg.lrs {
            for warmup in [false, true] {
                let rs: Vec<&Run> = runs
                    .iter()
                    .filter(|r| &r.placement == p && r.lr == lr && r.warmup == warmup)
                    .collect();
                let count = |o: Outcome| rs.iter().filter(|r| r.outcome == o).count();
                cells.push(Cell {
                    placement: p.clone(),
                    lr,
                    warmup,
                    seeds: rs.len(),
                    stalled: count(Outcome::Stalled),
                    blew_up: count(Outcome::BlewUp),
                    median_excess: median(rs.iter().map(|r| excess(r, h)).collect()),
                });
            }
        }
    }
    cells
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
        Self::measure_with_progress(cfg, seed, &no_progress)
    }

    fn measure_with_progress(
        cfg: &Config,
        seed: u64,
        progress: ProgressFn<'_>,
    ) -> Result<Measurements, StudyError> {
        let start = Instant::now();
        let mut rng = study_rng(seed, ID);
        let chain = MarkovChain::random(cfg.vocab, cfg.sharpness, &mut rng)?;
        let val = batch_of(&chain, cfg.val_sequences, cfg.seq_len, &mut rng);
        let val_true_loss = true_loss(&chain, &val.0, &val.1);
        let run_seed: u64 = rng.random();
        let setup = Setup {
            cfg,
            chain: &chain,
            val: &val,
            seed: run_seed,
        };
        let h = chain.entropy_rate();
        let mut jobs = Vec::new();
        for p in &cfg.placements {
            for &lr in &cfg.lrs {
                let seeds = if lr == cfg.headline_lr {
                    cfg.seeds
                } else {
                    cfg.sweep_seeds
                };
                for warmup in [false, true] {
                    for s in 0..seeds {
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
        let results = run_all(&setup, &jobs, progress, 0, total)?;
        let (rms_runs, runs): (Vec<Run>, Vec<Run>) = results
            .into_iter()
            .partition(|r| r.norm == NormKind::RmsNorm.name());
        let cells = cells_of(cfg, &runs, h);
        let stability: Vec<Stability> = cfg
            .placements
            .iter()
            .map(|p| {
                let of = |w: bool| cells.iter().filter(move |c| &c.placement == p && c.warmup == w);
                let max = |w: bool| of(w).filter(|c| c.trained()).map(|c| c.lr).reduce(f64::max);
                let first = |w: bool| of(w).find_map(|c| c.failure().map(|o| (c.lr, o)));
                Stability {
                    placement: p.clone(),
                    max_lr_no_warmup: max(false),
                    max_lr_warmup: max(true),
                    first_failure_no_warmup: first(false),
                    first_failure_warmup: first(true),
                }
            })
            .collect();
        // Post-Norm never failed without warmup: find where it does, above the sweep.
        let mut beyond = Vec::new();
        let post_never_failed = stability
            .iter()
            .any(|s| s.placement == "post-norm" && s.first_failure_no_warmup.is_none());
        if post_never_failed {
            let top = cfg.lrs[cfg.lrs.len() - 1];
            for (k, factor) in [3.0, 10.0, 30.0].into_iter().enumerate() {
                let lr = top * factor;
                let pair = ["post-norm", "pre-norm"].map(|p| Job {
                    placement: p,
                    norm: NormKind::LayerNorm,
                    lr,
                    warmup: false,
                    seed: 0,
                });
                let rs = run_all(&setup, &pair, progress, total + 2 * k, total + 6)?;
                let post_failed = rs[0].outcome != Outcome::Trained;
                beyond.extend(rs);
                if post_failed {
                    break;
                }
            }
        }
        Ok(Measurements {
            entropy_rate: h,
            unigram_entropy: chain.unigram_entropy(),
            floor: chain.sequence_floor(cfg.seq_len),
            val_true_loss,
            runs,
            rms_runs,
            beyond,
            cells,
            stability,
            step_flops: 3.0 * forward_flops(cfg),
            wall_seconds: start.elapsed().as_secs_f64(),
        })
    }

    fn findings(cfg: &Config, m: &Measurements) -> Vec<Finding> {
        let h = m.entropy_rate;
        let lr_text = |l: Option<f64>| l.map_or("none of the swept rates".to_owned(), s3);
        let fail_text = |f: Option<(f64, Outcome)>| {
            f.map_or("it failed at none of them".to_owned(), |(lr, o)| {
                format!("it first failed at {} ({})", s3(lr), o.words())
            })
        };
        let mut out = Vec::new();
        // The headline: Post-Norm against Pre-Norm without warmup.
        if let (Some(post), Some(pre)) = (m.stability_of("post-norm"), m.stability_of("pre-norm")) {
            let top = cfg.lrs[cfg.lrs.len() - 1];
            let (verdict, value) = match (post.max_lr_no_warmup, pre.max_lr_no_warmup) {
                (None, Some(y)) => (
                    format!(
                        "Post-Norm trained at none of the swept rates without warmup ({}), Pre-Norm up to {}",
                        fail_text(post.first_failure_no_warmup),
                        s3(y)
                    ),
                    f64::INFINITY,
                ),
                (Some(x), Some(y)) if post.first_failure_no_warmup.is_none() => (
                    format!(
                        "Post-Norm trained at every swept rate without warmup (up to {}; Pre-Norm up to {}), so this \
                         sweep does not show it failing; {}",
                        s3(x),
                        s3(y),
                        beyond_text(m, top)
                    ),
                    y / x,
                ),
                (Some(x), Some(y)) if y > x => (
                    format!(
                        "without warmup Pre-Norm trained at learning rates up to {} ({}), Post-Norm only up to {} ({})",
                        s3(y),
                        fail_text(pre.first_failure_no_warmup),
                        s3(x),
                        fail_text(post.first_failure_no_warmup)
                    ),
                    y / x,
                ),
                (Some(x), Some(y)) => (
                    format!(
                        "without warmup Post-Norm trained up to {} and Pre-Norm up to {}: Pre-Norm did not tolerate a \
                         larger rate here",
                        s3(x),
                        s3(y)
                    ),
                    y / x,
                ),
                (_, None) => (
                    format!(
                        "Pre-Norm itself trained at none of the swept rates without warmup ({}), so this run cannot \
                         compare the placements",
                        fail_text(pre.first_failure_no_warmup)
                    ),
                    f64::NAN,
                ),
            };
            out.push(
                Finding::new(
                    &Name::Headline.id(),
                    value,
                    "×",
                    format!(
                        "In {} {}-block models trained for {} steps with AdamW on the Markov language: {verdict}. \
                         With {} warmup steps Post-Norm trained up to {} and Pre-Norm up to {}.",
                        cfg.placements.len(),
                        cfg.n_layers,
                        cfg.steps,
                        cfg.warmup_steps,
                        lr_text(post.max_lr_warmup),
                        lr_text(pre.max_lr_warmup),
                    ),
                )
                .labelled("Largest learning rate that trains without warmup, Pre-Norm over Post-Norm")
                .cite(&[Reference::Xiong2020, Reference::Liu2020])
                .summary(),
            );
        }
        // How close the best Pre-Norm run came to the entropy rate.
        if let Some(best) = m
            .runs
            .iter()
            .filter(|r| r.placement == "pre-norm" && r.outcome == Outcome::Trained)
            .min_by(|a, b| a.final_val.total_cmp(&b.final_val))
        {
            let closed = (m.unigram_entropy - best.final_val) / (m.unigram_entropy - h);
            out.push(
                Finding::new(
                    &Name::GapClosed.id(),
                    closed,
                    "fraction",
                    format!(
                        "The best Pre-Norm run (lr {}, {}) reached a validation loss of {} nats/token: it closed {}% \
                         of the gap between the unigram entropy {} (no context) and the entropy rate H = {} (the \
                         loss of the true chain; {} over a sequence whose first prediction sees one token).",
                        s3(best.lr),
                        if best.warmup { "with warmup" } else { "without warmup" },
                        s3(best.final_val),
                        s3(100.0 * closed),
                        s3(m.unigram_entropy),
                        s3(h),
                        s3(m.floor),
                    ),
                )
                .labelled("Share of the context the best Pre-Norm model learned"),
            );
        }
        for s in &m.stability {
            out.push(
                Finding::new(
                    &Name::MaxStableLr(&s.placement).id(),
                    s.max_lr_no_warmup.unwrap_or(0.0),
                    "",
                    format!(
                        "{}: largest swept learning rate at which every seed trained: {} without warmup ({}), {} with \
                         {} warmup steps ({}).",
                        s.placement,
                        lr_text(s.max_lr_no_warmup),
                        fail_text(s.first_failure_no_warmup),
                        lr_text(s.max_lr_warmup),
                        cfg.warmup_steps,
                        fail_text(s.first_failure_warmup),
                    ),
                )
                .labelled(&format!("Largest learning rate that trains, {}", s.placement))
                .cite(placement_refs(&s.placement)),
            );
        }
        for c in m.cells.iter().filter(|c| c.lr == cfg.headline_lr) {
            let when = if c.warmup { "with warmup" } else { "without warmup" };
            out.push(
                Finding::new(
                    &Name::Excess(&c.placement, c.warmup).id(),
                    c.median_excess,
                    "nats/token",
                    format!(
                        "{} at lr {} {when}: final validation loss − H = {} nats/token (median of {} seeds; {} \
                         stalled, {} blew up; the unigram entropy is {} above H, the best possible sequence loss {}).",
                        c.placement,
                        s3(c.lr),
                        s3(c.median_excess),
                        c.seeds,
                        c.stalled,
                        c.blew_up,
                        s3(m.unigram_entropy - h),
                        s3(m.floor - h),
                    ),
                )
                .labelled(&format!("Final excess loss, {} {when}", c.placement))
                .cite(placement_refs(&c.placement)),
            );
        }
        for p in &cfg.placements {
            let g0 = grad0(cfg, m, p);
            if let (Some(first), Some(last)) = (g0.first(), g0.last()) {
                let ratio = last / first;
                let side = if ratio > 1.0 {
                    "larger near the output"
                } else {
                    "larger near the input"
                };
                out.push(
                    Finding::new(
                        &Name::Grad0(p).id(),
                        ratio,
                        "×",
                        format!(
                            "{p}: at step 0 the gradient norm of the last block is {} times that of the first (mean \
                             over {} seeds): {side}.",
                            s3(ratio),
                            cfg.seeds,
                        ),
                    )
                    .labelled(&format!("Step-0 gradient, last block over first, {p}"))
                    .cite(&[Reference::Xiong2020]),
                );
            }
        }
        // Over the first steps: where the largest block gradient sits, step by step.
        for p in ["post-norm", "pre-norm"] {
            let g = grad_steps(cfg, m, p);
            if g.is_empty() {
                continue;
            }
            let ratios: Vec<f64> = g.iter().map(|row| row[row.len() - 1] / row[0]).collect();
            let argmax = |row: &Vec<f64>| {
                (0..row.len())
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                    .unwrap_or(0)
            };
            let last = g[0].len() - 1;
            let at_last = g.iter().filter(|row| argmax(row) == last).count();
            let at_first = g.iter().filter(|row| argmax(row) == 0).count();
            let (lo, hi) = ratios
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &r| {
                    (a.min(r), b.max(r))
                });
            out.push(
                Finding::new(
                    &Name::GradSteps(p).id(),
                    median(ratios.clone()),
                    "×",
                    format!(
                        "{p} at lr {} without warmup, over the first {} steps (mean of {} seeds): the last block's \
                         gradient norm is {} to {} times the first block's (median {}); the largest of the {} blocks \
                         is the last in {} of the {} steps and the first in {}.",
                        s3(cfg.headline_lr),
                        g.len(),
                        cfg.seeds,
                        s3(lo),
                        s3(hi),
                        s3(median(ratios)),
                        last + 1,
                        at_last,
                        g.len(),
                        at_first,
                    ),
                )
                .labelled(&format!("Early steps' gradient, last block over first, {p}"))
                .cite(&[Reference::Xiong2020]),
            );
        }
        let rms_excess = |w: bool| {
            median(
                m.rms_runs
                    .iter()
                    .filter(|r| r.warmup == w)
                    .map(|r| excess(r, h))
                    .collect(),
            )
        };
        if let Some(c) = m.cell("pre-norm", cfg.headline_lr, true) {
            let r = rms_excess(true);
            out.push(
                Finding::new(
                    &Name::RmsMinusLayerNorm.id(),
                    r - c.median_excess,
                    "nats/token",
                    format!(
                        "Pre-Norm with warmup at lr {}: final validation loss − H = {} with RMSNorm and {} with \
                         LayerNorm (medians of {} seeds): a difference of {} nats/token.",
                        s3(cfg.headline_lr),
                        s3(r),
                        s3(c.median_excess),
                        cfg.seeds,
                        s3(r - c.median_excess),
                    ),
                )
                .labelled("Pre-Norm final excess loss, RMSNorm minus LayerNorm")
                .cite(&[Reference::ZhangSennrich2019]),
            );
        }
        out
    }

    fn explanation(cfg: &Config, m: &Measurements) -> Vec<String> {
        vec![
            format!(
                "Each model is a causal decoder-only transformer ({} blocks, width {}, {} heads, feed-forward {}) \
                 with a learned token embedding, sinusoidal positions and an untied output head, trained with AdamW \
                 (β = 0.9, 0.999, no weight decay, no clipping, constant learning rate after any warmup) on fresh \
                 batches of {} sequences of {} tokens for {} steps.",
                cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.batch, cfg.seq_len, cfg.steps
            ),
            format!(
                "The language is a random order-2 Markov chain over {} tokens: the next token depends on the two \
                 before it. Its entropy rate H = {} nats/token is the loss of a perfect model (the first prediction \
                 of a sequence sees one token only, so the best mean loss over a sequence is {}). A model that \
                 ignores the context reaches the unigram entropy {}. Excess loss is validation loss − H, on {} \
                 held-out sequences (the true chain scores {} − H = {} on them).",
                cfg.vocab,
                s3(m.entropy_rate),
                s3(m.floor),
                s3(m.unigram_entropy),
                cfg.val_sequences,
                s3(m.val_true_loss),
                s3(m.val_true_loss - m.entropy_rate),
            ),
            format!(
                "A run trained if its final validation loss closed at least {}% of the gap between the unigram \
                 entropy and H (below {} nats/token). It stalled if it stayed above that (it learned token \
                 frequencies, not the context), and it blew up if a loss became non-finite or rose above twice its \
                 value at step 0. The sweep covers learning rates {}, each without warmup and with {} linear warmup \
                 steps; the rate {} has {} seeds per cell, the others {}.",
                s3(100.0 * LEARNED_FRACTION),
                s3(trained_below(m.unigram_entropy, m.entropy_rate)),
                cfg.lrs.iter().map(|&l| s3(l)).collect::<Vec<_>>().join(", "),
                cfg.warmup_steps,
                s3(cfg.headline_lr),
                cfg.seeds,
                cfg.sweep_seeds,
            ),
            format!(
                "A block's gradient norm is ‖dL/dθ‖ over all the parameters of that block (attention, feed-forward \
                 and its norms), recorded at each of the first {} steps of every run; Xiong et al. (2020) derive \
                 that at initialization Post-Norm's is largest near the output. The figure shows step 0 for every \
                 placement and the first {} steps of Post- and Pre-Norm at lr {} without warmup; the training-loss \
                 curves average the training batches between evaluations, so they are noisier than the validation \
                 curves and sit on the same scale.",
                cfg.grad_steps,
                cfg.grad_steps,
                s3(cfg.headline_lr),
            ),
        ]
    }

    fn caption(cfg: &Config, m: &Measurements) -> String {
        let maps: Vec<&str> = ["post-norm", "pre-norm"]
            .into_iter()
            .filter(|p| !grad_steps(cfg, m, p).is_empty())
            .collect();
        let heat = match maps.len() {
            0 => String::new(),
            n => format!(
                " {}: each block's gradient norm (log scale{}) over the first {} steps of {} at learning rate {} \
                 without warmup; block 0 is the input side.",
                if n == 2 { "(h) and (i)" } else { "(h)" },
                if n == 2 { ", one colour scale for both" } else { "" },
                cfg.grad_steps,
                maps.join(" and "),
                s3(cfg.headline_lr)
            ),
        };
        format!(
            "(a) and (b): validation loss above the floor H while training at learning rate {}, \
             without and with warmup, on a log axis; (c) and (d): the training loss (the mean \
             over each stretch of {} steps) of the same runs; in all four the dashed lines mark \
             what a model that ignores context reaches (the unigram entropy) and the best loss \
             any model of these sequences can reach. (e) and (f): the final loss − H of every \
             placement at every learning rate; the higher the bar, the less the run learned, \
             and the panel titles name the runs that failed. (g): each block's gradient norm at \
             step 0, input side on the left.{heat}",
            s3(cfg.headline_lr),
            cfg.eval_every,
        )
    }

    fn figure(cfg: &Config, m: &Measurements) -> Figure {
        let h = m.entropy_rate;
        let mut panels = Vec::new();
        let reference_lines = |end: f64| {
            vec![
                LineSeries {
                    label: "unigram entropy − H (no context)".into(),
                    x: vec![0.0, end],
                    y: vec![m.unigram_entropy - h; 2],
                    style: LineStyle::Dashed,
                },
                LineSeries {
                    label: "best sequence loss − H".into(),
                    x: vec![0.0, end],
                    y: vec![m.floor - h; 2],
                    style: LineStyle::Dashed,
                },
            ]
        };
        // (a)–(d): validation, then training, loss − H of the headline runs.
        for train in [false, true] {
            for warmup in [false, true] {
                let mut series = Vec::new();
                for p in &cfg.placements {
                    let rs: Vec<&Run> = m
                        .runs
                        .iter()
                        .filter(|r| &r.placement == p && r.lr == cfg.headline_lr && r.warmup == warmup)
                        .collect();
                    if let Some(first) = rs.first() {
                        let curve = |r: &'_ Run| {
                            if train {
                                r.train_loss.clone()
                            } else {
                                r.val_loss.clone()
                            }
                        };
                        // Training-loss windows end at the evaluations after step 0.
                        let steps = if train {
                            &first.val_steps[1..]
                        } else {
                            &first.val_steps[..]
                        };
                        // Runs that blew up stop early: the mean runs while every seed has a
                        // point; a log axis shows only positive excesses.
                        let n = rs
                            .iter()
                            .map(|r| curve(r).len())
                            .min()
                            .unwrap_or(0)
                            .min(steps.len());
                        let (x, y): (Vec<f64>, Vec<f64>) = (0..n)
                            .map(|k| {
                                let mean = rs.iter().map(|r| curve(r)[k] - h).sum::<f64>() / rs.len() as f64;
                                (steps[k] as f64, mean)
                            })
                            .filter(|(_, v)| v.is_finite() && *v > 0.0)
                            .unzip();
                        series.push(LineSeries {
                            label: p.clone(),
                            x,
                            y,
                            style: LineStyle::Markers,
                        });
                    }
                }
                series.extend(reference_lines(cfg.steps as f64));
                panels.push(Panel {
                    title: format!(
                        "{} loss − H at lr {}, {}",
                        if train { "Training" } else { "Validation" },
                        s3(cfg.headline_lr),
                        if warmup {
                            format!("{} warmup steps", cfg.warmup_steps)
                        } else {
                            "no warmup".to_owned()
                        }
                    ),
                    x_label: "training step".into(),
                    // The caption says the training loss is a mean over each stretch of steps.
                    y_label: format!("loss − H (nats/token, mean of {} seeds)", cfg.seeds),
                    content: PanelContent::Lines {
                        series,
                        x_scale: Scale::Linear,
                        y_scale: Scale::Log,
                    },
                });
            }
        }
        // The stability map: final excess (loss − H) per placement and learning rate.
        let cap = 2.0 * (cfg.vocab as f64).ln() - h;
        for warmup in [false, true] {
            let mut notes = Vec::new();
            let series = cfg
                .placements
                .iter()
                .map(|p| BarSeries {
                    label: p.clone(),
                    values: cfg
                        .lrs
                        .iter()
                        .map(|&lr| match m.cell(p, lr, warmup) {
                            Some(c) => {
                                if let Some(o) = c.failure() {
                                    notes.push(format!("{p} at {}: {}", s3(lr), o.words()));
                                }
                                if c.median_excess.is_finite() {
                                    c.median_excess
                                } else {
                                    cap
                                }
                            }
                            None => f64::NAN,
                        })
                        .collect(),
                })
                .collect();
            panels.push(Panel {
                title: format!(
                    "Final loss − H by learning rate, {}. Failed: {}",
                    if warmup { "with warmup" } else { "no warmup" },
                    if notes.is_empty() {
                        "none".to_owned()
                    } else {
                        notes.join("; ")
                    }
                ),
                x_label: "peak learning rate".into(),
                y_label: "final validation loss − H (median of seeds; blew up: drawn at 2 ln V − H)".into(),
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
                let g = grad0(cfg, m, p);
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
            y_label: format!("‖dL/dθ_block‖ (mean of {} seeds)", cfg.seeds),
            content: PanelContent::Lines {
                series,
                x_scale: Scale::Linear,
                y_scale: Scale::Log,
            },
        });
        // (h), (i): every block's gradient norm over the first steps, Post- and Pre-Norm, on
        // one colour scale.
        let maps: Vec<(&str, Vec<Vec<f64>>)> = ["post-norm", "pre-norm"]
            .into_iter()
            .filter(|p| cfg.placements.iter().any(|q| q == p))
            .map(|p| (p, grad_steps(cfg, m, p)))
            .filter(|(_, g)| !g.is_empty())
            .collect();
        let logs = maps
            .iter()
            .flat_map(|(_, g)| g.iter().flatten())
            .filter(|v| v.is_finite() && **v > 0.0)
            .map(|v| v.log10());
        let range = logs.fold(None, |r: Option<(f64, f64)>, v| {
            Some(r.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
        });
        for (p, g) in &maps {
            let (steps, blocks) = (g.len(), g[0].len());
            panels.push(Panel {
                title: format!(
                    "{p}: each block's gradient norm over the first {steps} steps (lr {}, no warmup)",
                    s3(cfg.headline_lr)
                ),
                x_label: "training step".into(),
                y_label: "block (0 = input side)".into(),
                content: PanelContent::Heatmap(Heatmap {
                    rows: blocks,
                    cols: steps,
                    values: (0..blocks)
                        .flat_map(|b| g.iter().map(move |row| row[b].log10()))
                        .collect(),
                    colorbar_label: format!("log₁₀ ‖dL/dθ_block‖ (mean of {} seeds)", cfg.seeds),
                    range,
                }),
            });
        }
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
                    "Pre-Norm LayerNorm training step (forward, backward, AdamW): {} ms, {} GFLOP/s of matmul work \
                     (median over runs; the runs share the cores).",
                    s3(ln * 1e3),
                    s3(m.step_flops / ln / 1e9)
                ),
            )
            .labelled("Training step, Pre-Norm LayerNorm"),
            Finding::new(
                "step_ms_pre_norm_rmsnorm",
                rms * 1e3,
                "ms",
                format!(
                    "Pre-Norm RMSNorm training step: {} ms, {} GFLOP/s ({}× the LayerNorm step time).",
                    s3(rms * 1e3),
                    s3(m.step_flops / rms / 1e9),
                    s3(rms / ln),
                ),
            )
            .labelled("Training step, Pre-Norm RMSNorm"),
            Finding::new(
                "wall_seconds",
                m.wall_seconds,
                "s",
                format!("The study's measurements took {} s.", s3(m.wall_seconds)),
            )
            .labelled("Training study wall time"),
        ]
    }
}

/// The names of this study's findings, in one place: [`Training::findings`] writes them
/// and the tests look findings up by them, so a renamed finding is renamed for both and
/// one that is gone fails to compile.
#[derive(Debug, Clone, Copy)]
enum Name<'a> {
    /// The headline: the largest rate that trains without warmup, Pre- over Post-Norm.
    Headline,
    /// The share of the context the best Pre-Norm run learned.
    GapClosed,
    /// A placement's largest rate that trains without warmup.
    MaxStableLr(&'a str),
    /// A placement's final excess loss at the headline rate, with warmup or not.
    Excess(&'a str, bool),
    /// A placement's step-0 gradient, last block over first.
    Grad0(&'a str),
    /// A placement's early steps' gradient, last block over first.
    GradSteps(&'a str),
    /// Pre-Norm's excess loss, RMSNorm minus LayerNorm.
    RmsMinusLayerNorm,
}

impl Name<'_> {
    /// The finding's `name`.
    fn id(self) -> String {
        match self {
            Name::Headline => "max_stable_lr_ratio_pre_over_post".into(),
            Name::GapClosed => "pre_norm_gap_closed".into(),
            Name::MaxStableLr(p) => format!("max_stable_lr_no_warmup_{p}"),
            Name::Excess(p, warmup) => {
                format!("excess_{p}_{}", if warmup { "warmup" } else { "no_warmup" })
            }
            Name::Grad0(p) => format!("grad0_last_over_first_{p}"),
            Name::GradSteps(p) => format!("grad_steps_last_over_first_{p}"),
            Name::RmsMinusLayerNorm => "pre_norm_rms_minus_layernorm_excess".into(),
        }
    }
}

/// What a placement's findings rest on.
fn placement_refs(p: &str) -> &'static [Reference] {
    match p {
        "post-norm" => &[Reference::Xiong2020, Reference::Liu2020],
        "pre-norm" => &[Reference::Xiong2020],
        "peri-norm" => &[Reference::Kim2025],
        "deepnorm" => &[Reference::Wang2022],
        _ => &[],
    }
}

/// What the runs beyond the sweep showed (only when Post-Norm never failed in it).
fn beyond_text(m: &Measurements, top: f64) -> String {
    let post_fail = m
        .beyond
        .iter()
        .find(|r| r.placement == "post-norm" && r.outcome != Outcome::Trained);
    match post_fail {
        Some(r) => {
            let pre = m
                .beyond
                .iter()
                .find(|q| q.placement == "pre-norm" && q.lr == r.lr)
                .map_or("was not run", |q| q.outcome.words());
            format!(
                "beyond it, without warmup, Post-Norm {} at {} ({}× the largest swept rate), where Pre-Norm {}",
                r.outcome.words(),
                s3(r.lr),
                s3(r.lr / top),
                pre
            )
        }
        None => format!(
            "it still trained at {} without warmup, the largest rate tried",
            s3(m.beyond.iter().map(|r| r.lr).fold(top, f64::max))
        ),
    }
}

/// Mean over seeds of the per-block gradient norms at step 0 for placement `p` (the
/// headline runs: step 0 comes before any update, so the learning rate plays no part).
fn grad0(cfg: &Config, m: &Measurements, p: &str) -> Vec<f64> {
    let g: Vec<&Vec<f64>> = m
        .runs
        .iter()
        .filter(|r| r.placement == p && !r.warmup && r.lr == cfg.headline_lr)
        .filter_map(|r| r.block_grad_norms.first())
        .collect();
    let Some(first) = g.first() else {
        return Vec::new();
    };
    (0..first.len())
        .map(|i| g.iter().map(|v| v[i]).sum::<f64>() / g.len() as f64)
        .collect()
}

/// Mean over seeds of the per-block gradient norms at each recorded step (`[step][block]`)
/// for placement `p`, headline runs without warmup; steps up to the shortest run's.
fn grad_steps(cfg: &Config, m: &Measurements, p: &str) -> Vec<Vec<f64>> {
    let g: Vec<&Vec<Vec<f64>>> = m
        .runs
        .iter()
        .filter(|r| r.placement == p && !r.warmup && r.lr == cfg.headline_lr)
        .map(|r| &r.block_grad_norms)
        .filter(|g| !g.is_empty())
        .collect();
    let steps = g.iter().map(|g| g.len()).min().unwrap_or(0);
    (0..steps)
        .map(|s| {
            (0..g[0][s].len())
                .map(|b| g.iter().map(|r| r[s][b]).sum::<f64>() / g.len() as f64)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::check_shape;

    /// The finding called `name`.
    fn finding<'f>(f: &'f [Finding], name: Name<'_>) -> &'f Finding {
        let id = name.id();
        f.iter()
            .find(|f| f.name == id)
            .unwrap_or_else(|| panic!("no finding {id}"))
    }

    /// The outcome rules, checked on every run.
    fn check_outcomes(m: &Measurements) {
        for r in m.runs.iter().chain(&m.rms_runs).chain(&m.beyond) {
            let start = r.val_loss[0];
            let exploded = r.val_loss.iter().any(|v| !(v.is_finite() && *v <= 2.0 * start))
                || r.train_loss.iter().any(|v| !v.is_finite());
            let expected = if exploded {
                Outcome::BlewUp
            } else if r.final_val >= trained_below(m.unigram_entropy, m.entropy_rate) {
                Outcome::Stalled
            } else {
                Outcome::Trained
            };
            assert_eq!(
                r.outcome, expected,
                "{} lr {} {:?}",
                r.placement, r.lr, r.val_loss
            );
        }
    }

    #[test]
    fn small_study_learns_at_a_modest_lr_and_fails_at_a_huge_one() {
        let cfg = Config::small();
        let m = Training::measure(&cfg, 42).unwrap();
        assert!(m.entropy_rate < m.floor && m.floor < m.unigram_entropy);
        assert_eq!(m.runs.len(), 2 * 2 * 2);
        assert_eq!(m.rms_runs.len(), 2);
        check_outcomes(&m);
        // lr 1e-2 for 60 steps learns: validation loss falls below its start, and
        // Pre-Norm closes a tenth of the gap to H (it used the context).
        for r in m.runs.iter().filter(|r| r.lr == 1e-2) {
            assert!(r.final_val < r.val_loss[0], "{} {:?}", r.placement, r.val_loss);
            assert_eq!(r.block_grad_norms.len(), 3);
            assert!(r.block_grad_norms[0].iter().all(|g| g.is_finite() && *g > 0.0));
        }
        let pre = m.stability_of("pre-norm").unwrap();
        assert_eq!(pre.max_lr_no_warmup, Some(1e-2));
        // lr 3 moves every weight by ~3 per Adam step: every cell fails, and the first
        // failure of each placement is recorded at that rate.
        assert!(m.cells.iter().filter(|c| c.lr == 3.0).all(|c| !c.trained()));
        assert_eq!(pre.first_failure_no_warmup.map(|f| f.0), Some(3.0));
        for s in &m.stability {
            assert!(s.first_failure_no_warmup.is_some(), "{s:?}");
        }
        // Post-Norm failed inside the sweep, so nothing ran beyond it.
        assert!(m.beyond.is_empty());
        // The cells count exactly the runs' outcomes, and bars and findings share loss − H.
        for c in &m.cells {
            let rs: Vec<&Run> = m
                .runs
                .iter()
                .filter(|r| r.placement == c.placement && r.lr == c.lr && r.warmup == c.warmup)
                .collect();
            assert_eq!(c.seeds, rs.len());
            assert_eq!(
                c.blew_up,
                rs.iter().filter(|r| r.outcome == Outcome::BlewUp).count()
            );
            if c.seeds == 1 && c.blew_up == 0 {
                assert_eq!(c.median_excess, rs[0].final_val - m.entropy_rate);
            }
        }
    }

    #[test]
    fn a_post_norm_stable_everywhere_is_said_and_pushed_until_it_fails() {
        // Two gentle rates: when Post-Norm trains at both, the study runs above the sweep.
        let cfg = Config {
            lrs: vec![3e-3, 1e-2],
            headline_lr: 1e-2,
            ..Config::small()
        };
        let m = Training::measure(&cfg, 42).unwrap();
        check_outcomes(&m);
        let post = m.stability_of("post-norm").unwrap();
        if post.first_failure_no_warmup.is_some() {
            assert!(m.beyond.is_empty());
            return;
        }
        assert!(!m.beyond.is_empty() && m.beyond.len() <= 6 && m.beyond.len().is_multiple_of(2));
        for pair in m.beyond.chunks(2) {
            assert_eq!(
                (pair[0].placement.as_str(), pair[1].placement.as_str()),
                ("post-norm", "pre-norm")
            );
            assert!(pair[0].lr > 1e-2 && pair[0].lr == pair[1].lr && !pair[0].warmup);
        }
        // Only the last pair may hold a Post-Norm failure.
        let n = m.beyond.len();
        assert!(
            m.beyond[..n - 2]
                .iter()
                .all(|r| r.placement != "post-norm" || r.outcome == Outcome::Trained)
        );
        let f = Training::findings(&cfg, &m);
        let head = f.iter().find(|f| f.summary).unwrap();
        assert_eq!(head.name, Name::Headline.id());
    }

    #[test]
    fn the_headline_handles_a_post_norm_that_never_trains() {
        let cfg = Config::small();
        let mut m = Training::measure(&cfg, 42).unwrap();
        for s in &mut m.stability {
            if s.placement == "post-norm" {
                s.max_lr_no_warmup = None;
                s.first_failure_no_warmup = Some((cfg.lrs[0], Outcome::Stalled));
            }
        }
        let f = Training::findings(&cfg, &m);
        let head = f.iter().find(|f| f.summary).unwrap();
        assert_eq!(head.value, f64::INFINITY);
        assert_eq!(f.iter().filter(|f| f.summary).count(), 1);
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
                .map(|r| (r.val_loss.clone(), r.block_grad_norms.clone(), r.outcome))
                .collect::<Vec<_>>()
        };
        let a = one(1);
        assert_eq!(format!("{a:?}"), format!("{:?}", one(3)));
    }

    #[test]
    fn figure_draws_train_and_validation_curves_and_early_gradients() {
        let cfg = Config::small();
        let m = Training::measure(&cfg, 42).unwrap();
        let fig = Training::figure(&cfg, &m);
        assert_eq!(fig.panels.len(), 9);
        // (a)-(d): validation then training curves, one series per placement plus the two
        // reference lines; the training curve of a run is its window means minus H.
        for (k, panel) in fig.panels[..4].iter().enumerate() {
            let PanelContent::Lines { series, .. } = &panel.content else {
                panic!("panel {k} is not a line chart")
            };
            assert_eq!(series.len(), cfg.placements.len() + 2, "{}", panel.title);
            assert!(series[..cfg.placements.len()].iter().all(|s| !s.y.is_empty()));
        }
        let PanelContent::Lines { series, .. } = &fig.panels[2].content else {
            unreachable!()
        };
        let pre = m
            .runs
            .iter()
            .find(|r| r.placement == "pre-norm" && r.lr == cfg.headline_lr && !r.warmup)
            .unwrap();
        let s = series.iter().find(|s| s.label == "pre-norm").unwrap();
        assert_eq!(s.x[0], pre.val_steps[1] as f64);
        assert_eq!(s.y[0], pre.train_loss[0] - m.entropy_rate);
        // (h), (i): blocks × recorded steps, log10 of the runs' norms, one shared range.
        let mut ranges = Vec::new();
        for (panel, p) in fig.panels[7..].iter().zip(["post-norm", "pre-norm"]) {
            let PanelContent::Heatmap(h) = &panel.content else {
                panic!("{} is not a heatmap", panel.title)
            };
            assert_eq!((h.rows, h.cols), (cfg.n_layers, cfg.grad_steps));
            let r = m
                .runs
                .iter()
                .find(|r| r.placement == p && r.lr == cfg.headline_lr && !r.warmup)
                .unwrap();
            assert_eq!(h.values[1], r.block_grad_norms[1][0].log10()); // block 0, step 1
            ranges.push(h.range);
        }
        assert!(ranges[0].is_some() && ranges[0] == ranges[1]);
        // The early-steps findings restate the per-step ratios.
        let f = Training::findings(&cfg, &m);
        let post = finding(&f, Name::GradSteps("post-norm"));
        let g = grad_steps(&cfg, &m, "post-norm");
        let ratios: Vec<f64> = g.iter().map(|row| row[cfg.n_layers - 1] / row[0]).collect();
        assert_eq!(post.value, median(ratios));
    }

    #[test]
    fn invalid_configs_are_refused() {
        let ok = Config::small();
        let cases: [fn(&mut Config); 9] = [
            |c| c.vocab = 1,
            |c| c.placements = vec!["side-norm".into()],
            |c| c.n_heads = 3,
            |c| c.lrs = vec![1e-2, 1e-3],
            |c| c.headline_lr = 0.5,
            |c| c.seeds = 0,
            |c| c.sweep_seeds = 0,
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
