//! Study 7 — Pre-Norm vs Post-Norm: where the norm sits in a transformer block, drawn as
//! a block diagram (Post-Norm: original Transformer, BERT; Pre-Norm: GPT-2, LLaMA,
//! Mistral; Peri-LN: a norm before and after each sublayer), and what that does to the
//! gradients at initialization. Stacks of real blocks from `norm-autograd` (multi-head
//! softmax attention, ReLU feed-forward, LayerNorm) at several depths, Post-Norm, Pre-Norm
//! and Peri-LN (both with a final norm) and DeepNorm (Post-Norm with the residual scaled
//! by α and a β-scaled init), one forward and backward of a regression loss each, over
//! several initializations. Per block: the gradient norm of the second feed-forward weight
//! and of the residual stream entering the block; per depth: the last block's and the
//! mean square of the residual stream leaving the last block. Set beside Xiong et al.
//! 2020, Theorem 1: the last block's feed-forward gradient stays about constant in depth
//! for Post-Norm and falls like 1/√L for Pre-Norm (the final norm divides by a residual
//! stream whose mean square grows like L). `measure` computes numbers only; `findings`,
//! `explanation` and `figure` lay them out.

use ndarray::Array3;
use norm_autograd::{
    BlockCache, Linear, Norm, NormKind, Placement, StackConfig, TransformerBlock, TransformerStack, mse_loss,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::common::{finding, normal, require_at_least, summary_finding};
use crate::format::sig;
use crate::references::Reference;
use crate::result::{
    BarSeries, Block, BlockDiagram, BlockKind, DiagramColumn, Figure, Finding, LineSeries, LineStyle, Panel,
    PanelContent, Scale,
};
use crate::stats::norm_f64;
use crate::study::{Study, StudyConfig};
use crate::{StudyError, study_rng};

/// Stable id.
pub const ID: &str = "pre-vs-post-norm";

/// Configuration of the Pre-Norm vs Post-Norm study.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Stack depths (numbers of blocks), strictly increasing, at least 2; the depth
    /// exponents are least-squares fits in log-log over all of them, and the per-block
    /// panels show the deepest.
    pub depths: Vec<usize>,
    /// Model width D (the feed-forward is 4·D wide).
    pub d_model: usize,
    /// Attention heads (must divide `d_model`).
    pub n_heads: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Sequences per batch (one forward and backward per stack over the whole batch).
    pub batch: usize,
    /// Independent initializations (weights, input and target) per stack; the page
    /// reports the median and the interquartile range over them.
    pub inits: usize,
}

impl Default for Config {
    /// The full-size study: seven depths from 3 to 24; D = 32, 4 heads, batch 4 × 16
    /// tokens; 12 initializations. `--set 'pre-vs-post-norm.depths=[3,6,12,24,48]'`
    /// reaches L = 48 (about three times the compute).
    fn default() -> Self {
        Self {
            depths: vec![3, 4, 6, 8, 12, 16, 24],
            d_model: 32,
            n_heads: 4,
            seq_len: 16,
            batch: 4,
            inits: 12,
        }
    }
}

impl StudyConfig for Config {
    /// Depths 2, 4, 8; D = 16, 2 heads, batch 2 × 8 tokens; 5 initializations.
    fn small() -> Self {
        Self {
            depths: vec![2, 4, 8],
            d_model: 16,
            n_heads: 2,
            seq_len: 8,
            batch: 2,
            inits: 5,
        }
    }

    /// # Errors
    /// [`StudyError::InvalidConfig`] for fewer than 2 depths, a depth of 0 or depths not
    /// strictly increasing, `d_model < 2`, `n_heads == 0` or not dividing `d_model`,
    /// `seq_len`, `batch` or `inits` 0.
    fn validate(&self) -> Result<(), StudyError> {
        let bad = |field, value: String, reason| StudyError::InvalidConfig {
            study: ID,
            field,
            value,
            reason,
        };
        require_at_least(
            ID,
            "depths",
            self.depths.len(),
            2,
            "a trend in depth needs at least 2 depths",
        )?;
        if self.depths.contains(&0) {
            return Err(bad(
                "depths",
                format!("{:?}", self.depths),
                "every depth must be >= 1",
            ));
        }
        if !self.depths.windows(2).all(|w| w[0] < w[1]) {
            return Err(bad(
                "depths",
                format!("{:?}", self.depths),
                "must be strictly increasing",
            ));
        }
        require_at_least(ID, "d_model", self.d_model, 2, "a norm needs at least 2 features")?;
        require_at_least(ID, "n_heads", self.n_heads, 1, "need at least one head")?;
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(bad(
                "n_heads",
                format!("{} (d_model = {})", self.n_heads, self.d_model),
                "must divide d_model",
            ));
        }
        require_at_least(ID, "seq_len", self.seq_len, 1, "need at least one position")?;
        require_at_least(ID, "batch", self.batch, 1, "need at least one sequence")?;
        require_at_least(ID, "inits", self.inits, 1, "need at least one initialization")
    }
}

/// The four arrangements measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Arrangement {
    /// Norm after each residual addition (original Transformer, BERT); no final norm.
    PostNorm,
    /// Norm on each sublayer's input (GPT-2, LLaMA, Mistral); a final norm.
    PreNorm,
    /// Norm on each sublayer's input and output, both on the branch (Kim et al. 2025);
    /// a final norm.
    PeriNorm,
    /// Post-Norm with the residual scaled by α = (2L)^¼ and the value, output and
    /// feed-forward weights initialized β = (8L)^−¼ smaller (Wang et al. 2022); no final
    /// norm.
    DeepNorm,
}

impl Arrangement {
    /// All four, in the order of the measurements, panels and findings.
    pub const ALL: [Arrangement; 4] = [
        Arrangement::PostNorm,
        Arrangement::PreNorm,
        Arrangement::PeriNorm,
        Arrangement::DeepNorm,
    ];

    /// The finding-name prefix, e.g. `pre`.
    pub fn key(self) -> &'static str {
        match self {
            Arrangement::PostNorm => "post",
            Arrangement::PreNorm => "pre",
            Arrangement::PeriNorm => "peri",
            Arrangement::DeepNorm => "deepnorm",
        }
    }

    /// The label on the page, e.g. "Pre-Norm".
    pub fn label(self) -> &'static str {
        match self {
            Arrangement::PostNorm => "Post-Norm",
            Arrangement::PreNorm => "Pre-Norm",
            Arrangement::PeriNorm => "Peri-LN",
            Arrangement::DeepNorm => "DeepNorm",
        }
    }

    /// The block placement for a stack of `depth` blocks.
    pub fn placement(self, depth: usize) -> Placement {
        match self {
            Arrangement::PostNorm => Placement::PostNorm,
            Arrangement::PreNorm => Placement::PreNorm,
            Arrangement::PeriNorm => Placement::PeriNorm,
            Arrangement::DeepNorm => Placement::deepnorm_for(depth),
        }
    }

    /// Whether the stack ends with a final norm (the residual stream is never normalized
    /// inside a block).
    pub fn final_norm(self) -> bool {
        self.placement(1).unnormalized_stream()
    }

    /// The papers a statement about this arrangement compares with.
    fn refs(self) -> &'static [Reference] {
        match self {
            Arrangement::PostNorm => &[Reference::Vaswani2017, Reference::Xiong2020],
            Arrangement::PreNorm => &[Reference::Xiong2020],
            Arrangement::PeriNorm => &[Reference::Kim2025],
            Arrangement::DeepNorm => &[Reference::Wang2022],
        }
    }
}

/// The median and interquartile range of a quantity over the initializations
/// (quartiles by linear interpolation between order statistics).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// 25th percentile.
    pub q1: f64,
    /// Median.
    pub median: f64,
    /// 75th percentile.
    pub q3: f64,
}

impl Spread {
    /// The quartiles of `v` (NaN for an empty slice).
    pub fn of(v: &[f64]) -> Self {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let q = |p: f64| {
            if s.is_empty() {
                return f64::NAN;
            }
            let h = p * (s.len() - 1) as f64;
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(s.len() - 1);
            s[lo] + (h - lo as f64) * (s[hi] - s[lo])
        };
        Self {
            q1: q(0.25),
            median: q(0.5),
            q3: q(0.75),
        }
    }
}

/// One arrangement at one depth, over the initializations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DepthMeasurements {
    /// Number of blocks L.
    pub depth: usize,
    /// `‖dL/dW₂‖` of the last block (Frobenius norm of the second feed-forward weight's
    /// gradient).
    pub last_w2: Spread,
    /// Mean square of the residual stream leaving the last block (what a final norm
    /// divides by; 1 where the block ends in a norm).
    pub stream_ms: Spread,
    /// Mean cosine similarity between the stream vectors of two tokens of one sequence,
    /// leaving the last block (0 for independent tokens, 1 when every token carries the
    /// same vector).
    pub token_cosine: Spread,
}

/// Per-block profiles of the deepest stack, over the initializations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profiles {
    /// Per block l = 1..L: the mean square of the stream leaving block l.
    pub stream_ms: Vec<Spread>,
    /// Per block l = 1..L: `‖dL/dW₂‖` of block l over that of block 1, per
    /// initialization; the last entry is the last/first ratio.
    pub w2: Vec<Spread>,
    /// Per block l = 1..L: `‖dL/dx_l‖` (residual stream entering block l) over
    /// `‖dL/dx_1‖`, per initialization; the last entry is the last/first ratio.
    pub residual: Vec<Spread>,
}

/// One arrangement at every depth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArrangementMeasurements {
    /// Which arrangement.
    pub arrangement: Arrangement,
    /// One entry per configured depth, in order.
    pub depths: Vec<DepthMeasurements>,
    /// Per-block profiles of the deepest stack (the only one backpropagated through
    /// every block; at the other depths only the last block's gradient is needed).
    pub profiles: Profiles,
    /// The exponent p of `‖dL/dW₂‖ of the last block ∝ L^p`: a least-squares line in
    /// log-log over the depths, fitted per initialization.
    pub w2_exponent: Spread,
    /// The exponent q of `mean square of the stream leaving the last block ∝ L^q`,
    /// fitted the same way.
    pub stream_exponent: Spread,
    /// The exponent of `‖dL/dW₂‖ · √(mean square)`: 0 when the final norm's division by
    /// the stream's scale is the whole depth dependence.
    pub w2_times_scale_exponent: Spread,
}

/// Everything the study measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurements {
    /// Post-Norm, Pre-Norm, Peri-LN, DeepNorm (the order of [`Arrangement::ALL`]).
    pub arrangements: Vec<ArrangementMeasurements>,
}

impl Measurements {
    /// The measurements of `a`.
    pub fn of(&self, a: Arrangement) -> &ArrangementMeasurements {
        let i = Arrangement::ALL.iter().position(|&x| x == a).unwrap_or(0);
        &self.arrangements[i]
    }
}

impl ArrangementMeasurements {
    /// The deepest stack.
    pub fn deepest(&self) -> &DepthMeasurements {
        &self.depths[self.depths.len() - 1]
    }
}

impl ArrangementMeasurements {
    /// `‖dL/dW₂‖` last block / first block of the deepest stack (median and quartiles over
    /// initializations).
    pub fn w2_last_over_first(&self) -> Spread {
        self.profiles.w2[self.profiles.w2.len() - 1]
    }

    /// `‖dL/dx‖` entering the last block / entering the first, deepest stack.
    pub fn residual_last_over_first(&self) -> Spread {
        self.profiles.residual[self.profiles.residual.len() - 1]
    }
}

/// The study (registry type).
pub struct PreVsPostNorm;

/// One initialization: the input, the target, and the blocks of the deepest Post-Norm
/// stack; every stack of this initialization is built from a prefix of these blocks.
struct Draw {
    /// Input `(batch, seq_len, d_model)`.
    x: Array3<f32>,
    /// Target, shaped like the input.
    t: Array3<f32>,
    /// `max(depths)` Post-Norm blocks, input side first.
    blocks: Vec<TransformerBlock<f32>>,
}

/// Draws one initialization from its own seed: input and target (standard normal), then
/// the blocks of the deepest Post-Norm stack (Xavier-normal weights, zero biases, drawn
/// block by block).
fn draw(cfg: &Config, seed: u64) -> Result<Draw, StudyError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shape = (cfg.batch, cfg.seq_len, cfg.d_model);
    let x = Array3::from_shape_simple_fn(shape, || normal(&mut rng) as f32);
    let t = Array3::from_shape_simple_fn(shape, || normal(&mut rng) as f32);
    let depth = cfg.depths.last().copied().unwrap_or(1);
    let post = StackConfig::new(
        depth,
        cfg.d_model,
        cfg.n_heads,
        Placement::PostNorm,
        NormKind::LayerNorm,
    );
    let blocks = TransformerStack::<f32>::new(&post, &mut rng)?.blocks;
    Ok(Draw { x, t, blocks })
}

/// `lin` with its weight multiplied by `beta` (the bias, zero at initialization, kept).
fn scaled(lin: &Linear<f32>, beta: f64) -> Result<Linear<f32>, StudyError> {
    let weight = lin.weight().mapv(|w| (beta * f64::from(w)) as f32);
    Ok(Linear::from_weights(weight, lin.bias().cloned())?)
}

/// The stack of arrangement `a` made of the first `depth` of `blocks` (Post-Norm blocks
/// at initialization). Post-Norm, Pre-Norm and Peri-LN blocks are initialized
/// identically (norms draw nothing), so Pre-Norm and Peri-LN are the same blocks with
/// the placement switched and the final norm added: they differ only in where the norms
/// sit. DeepNorm's init multiplies the gain of the value, output and feed-forward
/// weights by β, so its blocks are these with those weights times β: the same standard
/// normals, as [`TransformerStack::new`] would draw them for DeepNorm from the same
/// generator state (up to one rounding of f32).
fn stack(
    cfg: &Config,
    a: Arrangement,
    depth: usize,
    blocks: &[TransformerBlock<f32>],
) -> Result<TransformerStack<f32>, StudyError> {
    let place = a.placement(depth);
    let blocks = blocks
        .get(..depth)
        .ok_or(StudyError::InvalidConfig {
            study: ID,
            field: "depths",
            value: format!("{:?}", cfg.depths),
            reason: "a depth exceeds the drawn stack",
        })?
        .iter()
        .map(|b| {
            let mut b = b.clone();
            if let Placement::DeepNorm { beta, .. } = place {
                b.attn.v = scaled(&b.attn.v, beta)?;
                b.attn.o = scaled(&b.attn.o, beta)?;
                b.ffn.lin1 = scaled(&b.ffn.lin1, beta)?;
                b.ffn.lin2 = scaled(&b.ffn.lin2, beta)?;
            }
            Ok(b.with_placement(place)?)
        })
        .collect::<Result<Vec<_>, StudyError>>()?;
    let final_norm = match a.final_norm() {
        true => Some(Norm::new(NormKind::LayerNorm, cfg.d_model)?),
        false => None,
    };
    Ok(TransformerStack { blocks, final_norm })
}

/// One stack, one initialization, one depth.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    /// `‖dL/dW₂‖` of the last block.
    last_w2: f64,
    /// Mean square of the stream leaving each block.
    stream_ms: Vec<f64>,
    /// Mean pairwise cosine between tokens of a sequence, leaving the last block.
    token_cosine: f64,
    /// Per-block gradient norms, when the backward went through every block.
    per_block: Option<PerBlock>,
}

/// Gradient norms of every block of one stack.
#[derive(Debug, Clone, PartialEq)]
struct PerBlock {
    /// `‖dL/dW₂‖` per block.
    w2: Vec<f64>,
    /// `‖dL/dx_l‖` per block (entering block l).
    residual: Vec<f64>,
}

/// How far a backward goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Through the last block only: its `‖dL/dW₂‖` is all a depth's trend needs.
    LastBlock,
    /// Through every block: the per-block profiles.
    Every,
}

/// Mean square of `a`'s entries.
fn mean_square(a: &Array3<f32>) -> f64 {
    let n = norm_f64(a);
    n * n / a.len() as f64
}

/// The mean, over sequences and pairs of distinct tokens, of the cosine similarity of
/// their vectors (0 for a single token).
fn token_cosine(a: &Array3<f32>) -> f64 {
    let (mut sum, mut pairs) = (0.0, 0usize);
    for seq in a.outer_iter() {
        let rows: Vec<Vec<f64>> = seq
            .outer_iter()
            .map(|r| {
                let v: Vec<f64> = r.iter().map(|&x| f64::from(x)).collect();
                let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                v.iter().map(|x| x / n).collect()
            })
            .collect();
        for i in 0..rows.len() {
            for j in i + 1..rows.len() {
                sum += rows[i].iter().zip(&rows[j]).map(|(x, y)| x * y).sum::<f64>();
                pairs += 1;
            }
        }
    }
    if pairs == 0 { 0.0 } else { sum / pairs as f64 }
}

/// The MSE loss on `final_norm(out)` (or `out`, the last of `outs`) against `t`, backward
/// through the final norm and the last block or every block of `blocks` (whose forward
/// caches are `caches` and outputs `outs`): the gradient norms and the stream's
/// statistics. The last block's gradient does not depend on how far the backward goes.
fn backward_sample(
    blocks: &[TransformerBlock<f32>],
    caches: &[BlockCache<f32>],
    outs: &[Array3<f32>],
    final_norm: Option<&Norm<f32>>,
    t: &Array3<f32>,
    reach: Reach,
) -> Result<Sample, StudyError> {
    let out = outs.last().ok_or(StudyError::InvalidConfig {
        study: ID,
        field: "depths",
        value: "0".to_owned(),
        reason: "every depth must be >= 1",
    })?;
    let stream_ms = outs.iter().map(mean_square).collect();
    let mut g = match final_norm {
        Some(fin) => {
            let (y, c) = fin.forward(out)?;
            let (_, dy) = mse_loss(&y, t)?;
            fin.backward(&c, &dy)?.0
        }
        None => mse_loss(out, t)?.1,
    };
    let mut w2 = Vec::with_capacity(blocks.len());
    let mut residual = Vec::with_capacity(blocks.len());
    let through = match reach {
        Reach::LastBlock => 1,
        Reach::Every => blocks.len(),
    };
    for (b, c) in blocks.iter().zip(caches).rev().take(through) {
        let (dx, grads) = b.backward(c, &g)?;
        w2.push(norm_f64(&grads.ffn.lin2.weight));
        residual.push(norm_f64(&dx));
        g = dx;
    }
    let last_w2 = w2[0];
    w2.reverse();
    residual.reverse();
    Ok(Sample {
        last_w2,
        stream_ms,
        token_cosine: token_cosine(out),
        per_block: (reach == Reach::Every).then_some(PerBlock { w2, residual }),
    })
}

/// Forward of `stack`'s blocks from `x`: every block's cache and output.
type Forward = (Vec<BlockCache<f32>>, Vec<Array3<f32>>);

fn forward(blocks: &[TransformerBlock<f32>], x: &Array3<f32>) -> Result<Forward, StudyError> {
    let mut caches = Vec::with_capacity(blocks.len());
    let mut outs: Vec<Array3<f32>> = Vec::with_capacity(blocks.len());
    for b in blocks {
        let (y, c) = b.forward(outs.last().unwrap_or(x))?;
        caches.push(c);
        outs.push(y);
    }
    Ok((caches, outs))
}

/// Arrangement `a` of one initialization at every depth. Post-Norm, Pre-Norm and Peri-LN
/// stacks of depth L are the first L blocks of the deepest, so one forward of the deepest
/// serves every depth (the same operations as a forward of each, so the same bits);
/// DeepNorm's constants depend on L, so each of its depths has its own stack.
fn samples(cfg: &Config, a: Arrangement, d: &Draw) -> Result<Vec<Sample>, StudyError> {
    let deepest = cfg.depths.last().copied().unwrap_or(1);
    let reach = |depth| match depth == deepest {
        true => Reach::Every,
        false => Reach::LastBlock,
    };
    if a == Arrangement::DeepNorm {
        return cfg
            .depths
            .iter()
            .map(|&depth| {
                let s = stack(cfg, a, depth, &d.blocks)?;
                let (caches, outs) = forward(&s.blocks, &d.x)?;
                backward_sample(&s.blocks, &caches, &outs, None, &d.t, reach(depth))
            })
            .collect();
    }
    let s = stack(cfg, a, deepest, &d.blocks)?;
    let (caches, outs) = forward(&s.blocks, &d.x)?;
    cfg.depths
        .iter()
        .map(|&depth| {
            backward_sample(
                &s.blocks[..depth],
                &caches[..depth],
                &outs[..depth],
                s.final_norm.as_ref(),
                &d.t,
                reach(depth),
            )
        })
        .collect()
}

/// Least-squares slope of `log y` against `log x`: the exponent `p` in `y ∝ x^p`.
fn loglog_slope(x: &[f64], y: &[f64]) -> f64 {
    let lx: Vec<f64> = x.iter().map(|v| v.ln()).collect();
    let ly: Vec<f64> = y.iter().map(|v| v.ln()).collect();
    let n = lx.len() as f64;
    let (mx, my) = (lx.iter().sum::<f64>() / n, ly.iter().sum::<f64>() / n);
    let sxy: f64 = lx.iter().zip(&ly).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = lx.iter().map(|a| (a - mx) * (a - mx)).sum();
    sxy / sxx
}

/// Per block, the quartiles over initializations of `pick(sample)[l] / pick(sample)[0]`.
fn profile(runs: &[&PerBlock], pick: fn(&PerBlock) -> &Vec<f64>) -> Vec<Spread> {
    let blocks = runs.first().map_or(0, |r| pick(r).len());
    (0..blocks)
        .map(|l| {
            let ratios: Vec<f64> = runs.iter().map(|r| pick(r)[l] / pick(r)[0]).collect();
            Spread::of(&ratios)
        })
        .collect()
}

/// The quartiles of one arrangement's samples, `runs[n][i]` for initialization n and
/// depth index i.
fn summarize(cfg: &Config, a: Arrangement, runs: &[Vec<Sample>]) -> ArrangementMeasurements {
    let depths_f: Vec<f64> = cfg.depths.iter().map(|&d| d as f64).collect();
    let depths = cfg
        .depths
        .iter()
        .enumerate()
        .map(|(i, &depth)| {
            let at: Vec<&Sample> = runs.iter().map(|r| &r[i]).collect();
            DepthMeasurements {
                depth,
                last_w2: Spread::of(&at.iter().map(|s| s.last_w2).collect::<Vec<_>>()),
                stream_ms: Spread::of(
                    &at.iter()
                        .map(|s| s.stream_ms[s.stream_ms.len() - 1])
                        .collect::<Vec<_>>(),
                ),
                token_cosine: Spread::of(&at.iter().map(|s| s.token_cosine).collect::<Vec<_>>()),
            }
        })
        .collect();
    // The deepest stack: every initialization's backward went through every block.
    let deepest: Vec<&Sample> = runs.iter().filter_map(|r| r.last()).collect();
    let per_block: Vec<&PerBlock> = deepest.iter().filter_map(|s| s.per_block.as_ref()).collect();
    let blocks = cfg.depths.last().copied().unwrap_or(0);
    let profiles = Profiles {
        stream_ms: (0..blocks)
            .map(|l| Spread::of(&deepest.iter().map(|s| s.stream_ms[l]).collect::<Vec<_>>()))
            .collect(),
        w2: profile(&per_block, |p| &p.w2),
        residual: profile(&per_block, |p| &p.residual),
    };
    let exponent = |f: &dyn Fn(&Sample) -> f64| {
        let slopes: Vec<f64> = runs
            .iter()
            .map(|r| loglog_slope(&depths_f, &r.iter().map(f).collect::<Vec<_>>()))
            .collect();
        Spread::of(&slopes)
    };
    let last = |s: &Sample| s.last_w2;
    let ms = |s: &Sample| s.stream_ms[s.stream_ms.len() - 1];
    ArrangementMeasurements {
        arrangement: a,
        depths,
        profiles,
        w2_exponent: exponent(&last),
        stream_exponent: exponent(&ms),
        w2_times_scale_exponent: exponent(&|s| last(s) * ms(s).sqrt()),
    }
}

/// Every arrangement, every depth, every initialization.
///
/// One seed per initialization, shared by the depths and the arrangements: each sees the
/// same input, target and random draws, and a shallower stack is the first blocks of the
/// deepest (common random numbers: the depth trend is not blurred by new draws). Every
/// (arrangement, initialization) is an independent job on the rayon pool; `collect`
/// keeps their order and each computes what it would alone, so the number of threads
/// changes no number.
fn measure_all(cfg: &Config, seed: u64) -> Result<Measurements, StudyError> {
    let mut rng = study_rng(seed, ID);
    let seeds: Vec<u64> = (0..cfg.inits).map(|_| rng.random()).collect();
    let draws = seeds
        .par_iter()
        .map(|&s| draw(cfg, s))
        .collect::<Result<Vec<Draw>, StudyError>>()?;
    let jobs: Vec<(Arrangement, usize)> = Arrangement::ALL
        .iter()
        .flat_map(|&a| (0..draws.len()).map(move |n| (a, n)))
        .collect();
    let runs = jobs
        .par_iter()
        .map(|&(a, n)| samples(cfg, a, &draws[n]))
        .collect::<Result<Vec<Vec<Sample>>, StudyError>>()?;
    Ok(Measurements {
        arrangements: Arrangement::ALL
            .iter()
            .enumerate()
            .map(|(k, &a)| summarize(cfg, a, &runs[k * draws.len()..(k + 1) * draws.len()]))
            .collect(),
    })
}

/// Whether `target` lies within the interquartile range `s`, in words.
fn agreement(s: Spread, target: f64) -> String {
    let t = format!("{target}").replace('-', "−");
    if s.q1 <= target && target <= s.q3 {
        format!("{t} lies within the interquartile range")
    } else if s.q3 < target {
        format!("steeper than {t}, outside the interquartile range")
    } else {
        format!(
            "shallower than {}, outside the interquartile range",
            sig(target, 2)
        )
    }
}

/// `median (IQR q1–q3)`.
fn with_iqr(s: Spread, digits: usize) -> String {
    format!(
        "{} (IQR {} to {})",
        sig(s.median, digits),
        sig(s.q1, digits),
        sig(s.q3, digits)
    )
}

/// A last/first ratio `r` as words comparing the first block with the last: "4.2× larger
/// than" for r < 1, "1.6× smaller than" for r > 1, "about as large as" within 5%.
fn fold(r: f64) -> String {
    if (r - 1.0).abs() < 0.05 {
        "about as large as".to_owned()
    } else if r < 1.0 {
        format!("{}× larger than", sig(1.0 / r, 2))
    } else {
        format!("{}× smaller than", sig(r, 2))
    }
}

/// `v` per depth: "0.12 at L = 3, 0.08 at L = 6, …".
fn per_depth(m: &ArrangementMeasurements, pick: fn(&DepthMeasurements) -> Spread) -> String {
    m.depths
        .iter()
        .map(|d| format!("{} at L = {}", sig(pick(d).median, 3), d.depth))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Post-Norm residual-gradient profile of the deepest stack (medians relative to
/// block 1): the block (0-based) and value of its minimum.
fn dip(m: &Profiles) -> (usize, f64) {
    m.residual
        .iter()
        .enumerate()
        .fold((0, f64::INFINITY), |(bi, bv), (i, s)| {
            if s.median < bv { (i, s.median) } else { (bi, bv) }
        })
}

/// The study's findings, from the measurements alone.
fn findings(cfg: &Config, m: &Measurements) -> Vec<Finding> {
    use Arrangement::{DeepNorm, PeriNorm, PostNorm, PreNorm};
    let (post, pre, peri, deep) = (m.of(PostNorm), m.of(PreNorm), m.of(PeriNorm), m.of(DeepNorm));
    let l_max = pre.deepest().depth;
    let n = cfg.inits;
    let mut out = Vec::new();

    let (r_pre, r_post) = (pre.residual_last_over_first(), post.residual_last_over_first());
    let (dip_block, dip_value) = dip(&post.profiles);
    let post_last = r_post.median;
    out.push(
        summary_finding(
            "pre_residual_last_over_first",
            r_pre.median,
            "ratio",
            format!(
                "Gradient highway: in a {l_max}-block Pre-Norm stack the gradient of the residual \
                 stream does not fade on its way to the input: entering the last block over entering \
                 the first, {} over {n} initializations, so the gradient entering the first block is \
                 {} the one entering the last, because every sublayer adds its own path to the \
                 identity of the un-normalized skip. Post-Norm, whose residual stream passes through \
                 a norm in every sublayer, has last/first = {}: the gradient reaching the first block \
                 is {} the last block's, and nowhere along the stack is the median more than {}× \
                 below the last block's: a few-fold change at initialization, not a vanishing by \
                 orders of magnitude. Peri-LN: {}; DeepNorm: {}.",
                with_iqr(r_pre, 3),
                fold(r_pre.median),
                with_iqr(r_post, 3),
                fold(r_post.median),
                sig(post_last / dip_value, 2),
                with_iqr(peri.residual_last_over_first(), 3),
                with_iqr(deep.residual_last_over_first(), 3),
            ),
        )
        .labelled("Pre-Norm residual-stream gradient, last block over first")
        .cite(&[Reference::Xiong2020]),
    );

    let first = 1.0;
    let dip_text = if dip_block == 0 {
        format!(
            "falls all the way from the last block to the first ({}× of the last): the \
             vanishing of the usual telling.",
            sig(first / post_last, 2)
        )
    } else if dip_block + 1 == l_max {
        format!(
            "only grows from the last block towards the first ({}× the last).",
            sig(first / post_last, 2)
        )
    } else {
        format!(
            "is not monotone: going down from the last block it falls to {}× of the last at block \
             {}, then rises again to {}× of the last at the first block. The fall from the output \
             is the vanishing of the usual telling; here it stops at block {} and turns, which \
             the last/first ratio alone does not show.",
            sig(dip_value / post_last, 2),
            dip_block + 1,
            sig(first / post_last, 2),
            dip_block + 1
        )
    };
    out.push(
        finding(
            "post_residual_dip",
            dip_value / post_last,
            "ratio",
            format!(
                "Post-Norm's residual-stream gradient (L = {l_max}, per block relative to the first \
                 block, median over initializations) {dip_text}"
            ),
        )
        .labelled("Post-Norm residual-stream gradient: lowest block over the last block")
        .cite(&[Reference::Liu2020]),
    );

    let (w_post, w_pre) = (post.deepest().last_w2.median, pre.deepest().last_w2.median);
    out.push(
        finding(
            "post_over_pre_last_w2",
            w_post / w_pre,
            "×",
            format!(
                "At L = {l_max} the last block's ‖dL/dW₂‖ is {}× larger in Post-Norm ({}) than in \
                 Pre-Norm ({}) (medians over initializations): the large output-side gradients \
                 Xiong et al. hold responsible for Post-Norm's need of a learning-rate warm-up.",
                sig(w_post / w_pre, 3),
                with_iqr(post.deepest().last_w2, 3),
                with_iqr(pre.deepest().last_w2, 3),
            ),
        )
        .labelled("Last block's FFN gradient, Post-Norm over Pre-Norm")
        .cite(&[Reference::Xiong2020]),
    );

    let depth_list = cfg
        .depths
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    for a in &m.arrangements {
        let (key, label) = (a.arrangement.key(), a.arrangement.label());
        let prediction = match a.arrangement {
            PostNorm => "Xiong et al.: about constant, exponent 0".to_owned(),
            PreNorm => format!(
                "Xiong et al.: ∝ 1/√L, exponent −0.5, through the final norm's division by a \
                 stream whose mean square grows like L; here that mean square grows like L^{} \
                 (IQR {} to {}), and ‖dL/dW₂‖·√(mean square) like L^{}: the final norm's division \
                 accounts for the depth dependence, and the measured exponent is −½ of the \
                 stream's growth exponent",
                sig(a.stream_exponent.median, 3),
                sig(a.stream_exponent.q1, 3),
                sig(a.stream_exponent.q3, 3),
                sig(a.w2_times_scale_exponent.median, 2)
            ),
            PeriNorm => format!(
                "each sublayer adds a normalized branch, so the stream's mean square grows like \
                 L^{} and the final norm divides by its root: ‖dL/dW₂‖·√(mean square) goes like \
                 L^{}",
                sig(a.stream_exponent.median, 3),
                sig(a.w2_times_scale_exponent.median, 2)
            ),
            // W₂'s input scales with β and the norm after α·h + FFN(h) divides by ≈ α:
            // β/α = (8N)^(−1/4)/(2N)^(1/4) = 1/(2√N).
            _ => "from DeepNorm's constants, β/α = 1/(2√L): exponent −0.5".to_owned(),
        };
        out.push(
            finding(
                &format!("{key}_last_w2_depth_exponent"),
                a.w2_exponent.median,
                "exponent",
                format!(
                    "{label}: the last block's ‖dL/dW₂‖ is {} (medians over {n} initializations); \
                     a least-squares line in log-log over L = {depth_list}, fitted per \
                     initialization, gives the exponent {} ({prediction}).",
                    per_depth(a, |d| d.last_w2),
                    with_iqr(a.w2_exponent, 2),
                ),
            )
            .labelled(&format!(
                "{label}: depth exponent of the last block's FFN gradient"
            ))
            .cite(a.arrangement.refs()),
        );
        out.push(
            finding(
                &format!("{key}_w2_last_over_first"),
                a.w2_last_over_first().median,
                "ratio",
                format!(
                    "{label}: at L = {l_max}, ‖dL/dW₂‖ of the last block over the first (per \
                     initialization; median and IQR) is {}, so the first block's is {} the last's.",
                    with_iqr(a.w2_last_over_first(), 3),
                    fold(a.w2_last_over_first().median)
                ),
            )
            .labelled(&format!("{label}: FFN gradient, last block over first"))
            .cite(a.arrangement.refs()),
        );
        if a.arrangement != PreNorm {
            out.push(
                finding(
                    &format!("{key}_residual_last_over_first"),
                    a.residual_last_over_first().median,
                    "ratio",
                    format!(
                        "{label}: at L = {l_max}, the residual-stream gradient entering the last \
                         block over the first (per initialization; median and IQR) is {}.",
                        with_iqr(a.residual_last_over_first(), 3)
                    ),
                )
                .labelled(&format!(
                    "{label}: residual-stream gradient, last block over first"
                ))
                .cite(a.arrangement.refs()),
            );
        }
    }
    let prof = &pre.profiles.stream_ms;
    let quarter = (l_max / 4).max(1);
    // Mean gain of the stream's mean square per block over blocks a+1..=b (1-based),
    // from the medians; block 0 is the input (mean square of a standard normal batch).
    let gain = |a: usize, b: usize| {
        let at = |l: usize| if l == 0 { 1.0 } else { prof[l - 1].median };
        (at(b) - at(a)) / (b - a) as f64
    };
    let (early, late) = (gain(0, quarter), gain(l_max - quarter, l_max));
    let (cos_first, cos_last) = (pre.depths[0].token_cosine, pre.deepest().token_cosine);
    out.push(
        finding(
            "pre_stream_ms_depth_exponent",
            pre.stream_exponent.median,
            "exponent",
            format!(
                "Pre-Norm: the mean square of the residual stream leaving the last block is {} \
                 (medians); fitted per initialization it grows like L^{}, where Xiong et al.'s \
                 Lemma 1 has it grow linearly. Per block it gains {} on average over the first {} \
                 blocks and {} over the last {} of the {l_max}-block stack: the blocks add more \
                 the deeper they sit. The tokens of a sequence align as they go up: the mean \
                 cosine similarity of two tokens' stream vectors is {} leaving block {} and {} \
                 leaving block {l_max}, and an attention sublayer, which averages over tokens, \
                 adds more to the stream the more alike the tokens are.",
                per_depth(pre, |d| d.stream_ms),
                with_iqr(pre.stream_exponent, 2),
                sig(early, 2),
                quarter,
                sig(late, 2),
                quarter,
                with_iqr(cos_first, 2),
                pre.depths[0].depth,
                with_iqr(cos_last, 2),
            ),
        )
        .labelled("Pre-Norm: depth exponent of the residual stream's mean square")
        .cite(&[Reference::Xiong2020]),
    );
    out.push(
        finding(
            "pre_w2_times_scale_depth_exponent",
            pre.w2_times_scale_exponent.median,
            "exponent",
            format!(
                "Pre-Norm: ‖dL/dW₂‖ of the last block times the root mean square of the stream \
                 the final norm divides goes like L^{} (per initialization, median, IQR {} to {}): \
                 the final norm's division is {} of the depth dependence, as in Xiong et al.'s \
                 argument, so the exponent of ‖dL/dW₂‖ is about −½ of the stream's growth \
                 exponent ({} here, against −0.5 for linear growth).",
                sig(pre.w2_times_scale_exponent.median, 2),
                sig(pre.w2_times_scale_exponent.q1, 2),
                sig(pre.w2_times_scale_exponent.q3, 2),
                if pre.w2_times_scale_exponent.median.abs() < 0.05 {
                    "all"
                } else {
                    "most"
                },
                sig(-0.5 * pre.stream_exponent.median, 2)
            ),
        )
        .labelled("Pre-Norm: depth exponent of the FFN gradient times the stream's scale")
        .cite(&[Reference::Xiong2020]),
    );
    out
}

/// The block diagram of the three placements (bottom to top).
fn diagram() -> BlockDiagram {
    let b = |label: &str, kind| Block {
        label: label.to_owned(),
        kind,
    };
    BlockDiagram {
        columns: vec![
            DiagramColumn {
                title: "Post-Norm".to_owned(),
                models: "Original Transformer, BERT".to_owned(),
                blocks: vec![
                    b("Input x", BlockKind::Io),
                    b("Self-Attention", BlockKind::Attention),
                    b("Add ⊕", BlockKind::Add),
                    b("LayerNorm", BlockKind::Norm),
                    b("Feed-Forward Network", BlockKind::FeedForward),
                    b("Add ⊕", BlockKind::Add),
                    b("LayerNorm", BlockKind::Norm),
                    b("Output", BlockKind::Io),
                ],
                // The skip leaves before the sublayer and joins after it; the norm then
                // sits on the residual path itself.
                skips: vec![(1, 2), (4, 5)],
            },
            DiagramColumn {
                title: "Pre-Norm".to_owned(),
                models: "GPT-2, LLaMA, Mistral".to_owned(),
                blocks: vec![
                    b("Input x", BlockKind::Io),
                    b("LayerNorm / RMSNorm", BlockKind::Norm),
                    b("Self-Attention", BlockKind::Attention),
                    b("Add ⊕", BlockKind::Add),
                    b("LayerNorm / RMSNorm", BlockKind::Norm),
                    b("Feed-Forward Network", BlockKind::FeedForward),
                    b("Add ⊕", BlockKind::Add),
                    b("Output", BlockKind::Io),
                ],
                // The skip leaves before the norm: the residual stream is never normalized.
                skips: vec![(1, 3), (4, 6)],
            },
            DiagramColumn {
                title: "Peri-LN".to_owned(),
                models: "Gemma 2, Gemma 3".to_owned(),
                blocks: vec![
                    b("Input x", BlockKind::Io),
                    b("Norm", BlockKind::Norm),
                    b("Self-Attention", BlockKind::Attention),
                    b("Norm", BlockKind::Norm),
                    b("Add ⊕", BlockKind::Add),
                    b("Norm", BlockKind::Norm),
                    b("Feed-Forward Network", BlockKind::FeedForward),
                    b("Norm", BlockKind::Norm),
                    b("Add ⊕", BlockKind::Add),
                    b("Output", BlockKind::Io),
                ],
                // Both norms sit on the branch: the stream is never normalized, and every
                // branch adds a normalized output.
                skips: vec![(1, 4), (5, 8)],
            },
        ],
        legend: vec![
            (BlockKind::Norm, "Normalization".to_owned()),
            (BlockKind::Attention, "Self-Attention".to_owned()),
            (BlockKind::FeedForward, "Feed-Forward Network".to_owned()),
            (BlockKind::Add, "Residual Addition".to_owned()),
            (BlockKind::Skip, "Residual Connection (skip)".to_owned()),
        ],
    }
}

/// The figure, from the measurements alone.
fn figure(cfg: &Config, m: &Measurements) -> Figure {
    let l_max = m.of(Arrangement::PreNorm).deepest().depth;
    let depths_f: Vec<f64> = cfg.depths.iter().map(|&d| d as f64).collect();
    let blocks_x: Vec<f64> = (1..=l_max).map(|l| l as f64).collect();
    let per_block = |pick: fn(&Profiles) -> &Vec<Spread>| {
        m.arrangements
            .iter()
            .map(|a| LineSeries {
                label: a.arrangement.label().to_owned(),
                x: blocks_x.clone(),
                y: pick(&a.profiles).iter().map(|s| s.median).collect(),
                style: LineStyle::Markers,
            })
            .collect::<Vec<_>>()
    };
    let per_depth = |pick: fn(&DepthMeasurements) -> f64, arrangements: &[Arrangement]| {
        arrangements
            .iter()
            .map(|&a| LineSeries {
                label: a.label().to_owned(),
                x: depths_f.clone(),
                y: m.of(a).depths.iter().map(pick).collect(),
                style: LineStyle::Markers,
            })
            .collect::<Vec<_>>()
    };
    let mut depth_series = per_depth(|d| d.last_w2.median, &Arrangement::ALL);
    // Xiong et al.'s scalings, anchored at the shallowest measured stack.
    let anchor = |a| m.of(a).depths[0].last_w2.median;
    depth_series.push(LineSeries {
        label: "Xiong et al.: Post-Norm ~ constant".to_owned(),
        x: depths_f.clone(),
        y: depths_f.iter().map(|_| anchor(Arrangement::PostNorm)).collect(),
        style: LineStyle::Dashed,
    });
    depth_series.push(LineSeries {
        label: "Xiong et al.: Pre-Norm ∝ 1/√L".to_owned(),
        x: depths_f.clone(),
        y: depths_f
            .iter()
            .map(|d| anchor(Arrangement::PreNorm) * (depths_f[0] / d).sqrt())
            .collect(),
        style: LineStyle::Dashed,
    });
    let unnormalized = [Arrangement::PreNorm, Arrangement::PeriNorm];
    let mut stream_series: Vec<LineSeries> = unnormalized
        .iter()
        .map(|&a| LineSeries {
            label: a.label().to_owned(),
            x: blocks_x.clone(),
            y: m.of(a).profiles.stream_ms.iter().map(|s| s.median).collect(),
            style: LineStyle::Markers,
        })
        .collect();
    // Linear growth through the last block's value.
    let ms_last = m.of(Arrangement::PreNorm).deepest().stream_ms.median;
    stream_series.push(LineSeries {
        label: "∝ l (linear growth, Xiong et al.'s Lemma 1)".to_owned(),
        x: blocks_x.clone(),
        y: blocks_x.iter().map(|l| ms_last * l / l_max as f64).collect(),
        style: LineStyle::Dashed,
    });
    let exponents = |pick: fn(&Spread) -> f64| {
        m.arrangements
            .iter()
            .map(|a| pick(&a.w2_exponent))
            .collect::<Vec<f64>>()
    };
    let lines = |series| PanelContent::Lines {
        series,
        x_scale: Scale::Linear,
        y_scale: Scale::Log,
    };
    let panels = vec![
        Panel {
            title: "Where Normalization Goes in a Transformer Block".to_owned(),
            x_label: String::new(),
            y_label: String::new(),
            content: PanelContent::Diagram(diagram()),
        },
        Panel {
            title: format!("FFN Weight Gradient per Block, Relative to Block 1 (L = {l_max})"),
            x_label: "block l".to_owned(),
            y_label: "‖dL/dW₂‖ block l / block 1 (median)".to_owned(),
            content: lines(per_block(|p| &p.w2)),
        },
        Panel {
            title: format!("Residual-Stream Gradient per Block, Relative to Block 1 (L = {l_max})"),
            x_label: "block l".to_owned(),
            y_label: "‖dL/dx_l‖ / ‖dL/dx_1‖ (median)".to_owned(),
            content: lines(per_block(|p| &p.residual)),
        },
        Panel {
            title: "Last Block's FFN Gradient vs Depth".to_owned(),
            x_label: "depth L (blocks)".to_owned(),
            y_label: "‖dL/dW₂‖ of the last block (median)".to_owned(),
            content: PanelContent::Lines {
                series: depth_series,
                x_scale: Scale::Log,
                y_scale: Scale::Log,
            },
        },
        Panel {
            title: format!("What the Final Norm Divides By: the Residual Stream (L = {l_max})"),
            x_label: "block l".to_owned(),
            y_label: "mean square of the stream leaving block l (median)".to_owned(),
            content: PanelContent::Lines {
                series: stream_series,
                x_scale: Scale::Log,
                y_scale: Scale::Log,
            },
        },
        Panel {
            title: format!(
                "Depth Exponent of the Last Block's FFN Gradient ({} initializations)",
                cfg.inits
            ),
            x_label: "placement".to_owned(),
            y_label: "exponent p in ‖dL/dW₂‖ ∝ L^p".to_owned(),
            content: PanelContent::Bars {
                categories: Arrangement::ALL.iter().map(|a| a.label().to_owned()).collect(),
                series: vec![
                    BarSeries {
                        label: "25th percentile".to_owned(),
                        values: exponents(|s| s.q1),
                    },
                    BarSeries {
                        label: "median".to_owned(),
                        values: exponents(|s| s.median),
                    },
                    BarSeries {
                        label: "75th percentile".to_owned(),
                        values: exponents(|s| s.q3),
                    },
                    BarSeries {
                        label: "Xiong et al. (Post 0, Pre −0.5); DeepNorm β/α −0.5".to_owned(),
                        values: Arrangement::ALL
                            .iter()
                            .map(|a| match a {
                                Arrangement::PostNorm => 0.0,
                                Arrangement::PeriNorm => f64::NAN,
                                _ => -0.5,
                            })
                            .collect(),
                    },
                ],
                y_scale: Scale::Linear,
            },
        },
    ];
    Figure {
        title: "Pre-Norm vs Post-Norm: Where Normalization Goes in a Transformer Block".to_owned(),
        panels,
        columns: 2,
    }
}

/// The explanation paragraphs, from the config and measurements.
fn explanation(cfg: &Config, m: &Measurements) -> Vec<String> {
    let pre = m.of(Arrangement::PreNorm);
    vec![
        "Post-Norm (the original Transformer, BERT) normalizes after each residual addition, so \
         the residual stream itself passes through a norm in every sublayer. Pre-Norm (GPT-2, \
         LLaMA, Mistral) normalizes only the input of each sublayer and adds the sublayer's output \
         back to an un-normalized stream: from the loss to the first block there is a path of \
         plain additions, the \"gradient highway\". Peri-LN (Kim et al. 2025) also normalizes \
         each sublayer's output before it is added, so every block adds branches of fixed \
         scale. Pre-Norm and Peri-LN stacks end with a final norm. Everything here is measured \
         at initialization; study 9 (Pre-Norm vs Post-Norm in Training) trains the same \
         placements and shows which of them train at which learning rates."
            .to_owned(),
        format!(
            "Setup: stacks of L = {} real blocks at initialization: D = {}, {} heads of softmax \
             attention, a ReLU feed-forward of width {}, LayerNorm everywhere (γ = 1, β = 0), \
             every weight Xavier-normal (variance 2/(fan-in + fan-out)), biases 0. Input and \
             target are standard normal, a batch of {} sequences of {} tokens; the loss is the mean \
             squared error over all {} outputs, one forward and backward through the \
             hand-written passes. Pre-Norm and Peri-LN end with a final LayerNorm, Post-Norm and \
             DeepNorm end with their last block's norm. DeepNorm is Post-Norm with the residual \
             multiplied by α = (2L)^¼ and the value, output and feed-forward weights initialized \
             β = (8L)^−¼ smaller. For each of {} initializations the four stacks see the same \
             input, target and random draws; Post-Norm, Pre-Norm and Peri-LN stacks have identical \
             weights and differ only in where the norms sit, and a shallower stack is the first \
             blocks of the deepest. Every number is the median over the initializations, with the \
             interquartile range (IQR) where a spread is given; the per-block panels show the \
             per-initialization ratio to block 1, so their last points are the last/first ratios \
             of the findings.",
            cfg.depths
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            cfg.d_model,
            cfg.n_heads,
            4 * cfg.d_model,
            cfg.batch,
            cfg.seq_len,
            cfg.batch * cfg.seq_len * cfg.d_model,
            cfg.inits
        ),
        format!(
            "Xiong et al. (2020, Theorem 1) bound the last block's W₂ gradient: about constant in \
             depth for Post-Norm, shrinking like 1/√L for Pre-Norm, because the final norm divides \
             by the residual stream's scale, whose square grows linearly in depth (their Lemma 1). \
             Here the Pre-Norm exponent, a least-squares line in log-log over the depths fitted \
             per initialization, is {} against −0.5: {}. The mechanism can be checked piece by \
             piece. The division: ‖dL/dW₂‖ times the stream's root mean square goes like L^{} \
             (IQR {} to {}), so the exponent is −½ of the stream's growth exponent. The growth: \
             the stream's mean square goes like L^{} (IQR {} to {}) over these depths, against \
             L^1 in their Lemma 1; the blocks add more the deeper they sit (the tokens align, and \
             attention, an average over tokens, adds more), while the input's unit mean square \
             weighs most in the shallow stacks. What moves the exponent was measured by hand, \
             outside this run, with crates/norm-experiments/examples/pre_norm_exponent.rs (one \
             change at a time, 16 initializations, depths 3 to 48, D = 64, batch 8): the loss \
             (MSE or a fixed random projection), Xavier-normal or Xavier-uniform weights, the \
             width and the batch moved it less than its spread (−0.53 to −0.57); switching the \
             attention sublayers' output off (−0.39) or tripling the input's scale (−0.26) makes \
             the stream grow slower than linearly and the exponent shallower than −0.5; without \
             the final norm the gradient grows with depth.",
            with_iqr(pre.w2_exponent, 2),
            agreement(pre.w2_exponent, -0.5),
            sig(pre.w2_times_scale_exponent.median, 2),
            sig(pre.w2_times_scale_exponent.q1, 2),
            sig(pre.w2_times_scale_exponent.q3, 2),
            sig(pre.stream_exponent.median, 3),
            sig(pre.stream_exponent.q1, 3),
            sig(pre.stream_exponent.q3, 3),
        ),
    ]
}

impl Study for PreVsPostNorm {
    const ID: &'static str = ID;
    const TITLE: &'static str = "Pre-Norm vs Post-Norm";
    const SUMMARY: &'static str = "Pre-Norm creates a direct gradient highway; standard in modern LLMs.";
    type Config = Config;
    type Measurements = Measurements;

    /// For every arrangement and depth, `inits` stacks at initialization, one forward and
    /// backward each.
    ///
    /// ```text
    /// Post-Norm: h = LN(x + Attn(x)),           y = LN(h + FFN(h))
    /// Pre-Norm:  h = x + Attn(LN(x)),           y = h + FFN(LN(h))           (final LN)
    /// Peri-LN:   h = x + LN(Attn(LN(x))),       y = h + LN(FFN(LN(h)))       (final LN)
    /// DeepNorm:  h = LN(α·x + Attn(x)),         y = LN(α·h + FFN(h)),   α = (2L)^¼, β = (8L)^−¼
    /// loss = MSE(stack(x), t),  x, t ~ N(0, 1)
    /// ```
    ///
    /// # Errors
    /// [`StudyError::Grad`] if a layer refuses its input (it cannot for a valid config).
    ///
    /// # Example
    /// ```
    /// use norm_experiments::Study;
    /// use norm_experiments::StudyConfig;
    /// use norm_experiments::studies::pre_vs_post_norm::{Arrangement, Config, PreVsPostNorm};
    /// let m = PreVsPostNorm::measure(&Config::small(), 42)?;
    /// let pre = m.of(Arrangement::PreNorm);
    /// assert!(pre.residual_last_over_first().median < 1.0); // the gradient highway
    /// # Ok::<(), norm_experiments::StudyError>(())
    /// ```
    fn measure(cfg: &Config, seed: u64) -> Result<Measurements, StudyError> {
        measure_all(cfg, seed)
    }

    fn findings(cfg: &Config, m: &Measurements) -> Vec<Finding> {
        findings(cfg, m)
    }

    fn explanation(cfg: &Config, m: &Measurements) -> Vec<String> {
        explanation(cfg, m)
    }

    fn caption(_: &Config, m: &Measurements) -> String {
        format!(
            "(a): where the norm sits in each block. (b) and (c) follow the gradient down the \
             {}-block stacks, each block relative to block 1: a line that ends below 1 at the \
             last block means the first block gets the larger gradient. (d): the last block's \
             FFN gradient against depth, beside Xiong et al.'s scalings (dashed); (e): the \
             residual stream the final norm divides by, beside linear growth; (f): each \
             placement's fitted depth exponent, its quartiles beside the predictions.",
            m.of(Arrangement::PreNorm).deepest().depth
        )
    }

    fn figure(cfg: &Config, m: &Measurements) -> Figure {
        figure(cfg, m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_determinism, check_invalid, check_shape};
    use norm_autograd::Module;

    #[test]
    fn diagram_has_the_three_placements_and_the_legend() {
        let d = diagram();
        let titles: Vec<(&str, &str)> = d
            .columns
            .iter()
            .map(|c| (c.title.as_str(), c.models.as_str()))
            .collect();
        assert_eq!(
            titles,
            [
                ("Post-Norm", "Original Transformer, BERT"),
                ("Pre-Norm", "GPT-2, LLaMA, Mistral"),
                ("Peri-LN", "Gemma 2, Gemma 3"),
            ]
        );
        let legend: Vec<&str> = d.legend.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            legend,
            [
                "Normalization",
                "Self-Attention",
                "Feed-Forward Network",
                "Residual Addition",
                "Residual Connection (skip)"
            ]
        );
        for c in &d.columns {
            // Every skip ends on an Add block above its start; every Add has one skip.
            for &(from, to) in &c.skips {
                assert!(from < to && to < c.blocks.len(), "{}: {from} -> {to}", c.title);
                assert_eq!(c.blocks[to].kind, BlockKind::Add);
            }
            let adds = c.blocks.iter().filter(|b| b.kind == BlockKind::Add).count();
            assert_eq!(adds, c.skips.len());
        }
        // Post-Norm: a norm right after each Add (the stream is normalized). Pre-Norm and
        // Peri-LN: each skip leaves before a norm, which sits inside the branch; the last
        // Add feeds the output directly (the stream is never normalized inside the block).
        let post = &d.columns[0];
        for &(_, to) in &post.skips {
            assert_eq!(post.blocks[to + 1].kind, BlockKind::Norm);
        }
        for unnormalized in &d.columns[1..] {
            for &(from, _) in &unnormalized.skips {
                assert_eq!(unnormalized.blocks[from].kind, BlockKind::Norm);
            }
            let last_add = unnormalized.skips.iter().map(|s| s.1).max().expect("skips");
            assert_eq!(unnormalized.blocks[last_add + 1].kind, BlockKind::Io);
        }
        // Peri-LN: a norm on each branch output, right before its Add.
        let peri = &d.columns[2];
        for &(_, to) in &peri.skips {
            assert_eq!(peri.blocks[to - 1].kind, BlockKind::Norm);
        }
    }

    #[test]
    fn quartiles_and_slope() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.q1, s.median, s.q3), (1.5, 2.0, 2.5));
        let s = Spread::of(&[4.0, 1.0, 3.0, 2.0, 5.0]);
        assert_eq!((s.q1, s.median, s.q3), (2.0, 3.0, 4.0));
        assert_eq!(Spread::of(&[7.0]).q3, 7.0);
        assert!(Spread::of(&[]).median.is_nan());
        let x = [3.0, 6.0, 12.0, 24.0, 48.0];
        let y: Vec<f64> = x.iter().map(|v: &f64| 3.0 * v.powf(-0.5)).collect();
        assert!((loglog_slope(&x, &y) + 0.5).abs() < 1e-12);
        let iqr = |q1, q3| Spread {
            q1,
            median: 0.5 * (q1 + q3),
            q3,
        };
        assert!(agreement(iqr(-0.56, -0.48), -0.5).starts_with("−0.5 lies within"));
        assert!(agreement(iqr(-0.6, -0.52), -0.5).starts_with("steeper"));
        assert!(agreement(iqr(-0.45, -0.4), -0.5).starts_with("shallower"));
    }

    /// Asserts the study's claims for one config and seed, on typed fields. Thresholds:
    /// the Pre-Norm highway (each block adds to an identity path) makes the first block's
    /// residual gradient at least twice the last's; Post-Norm stays within a small factor
    /// at initialization; Xiong et al.'s exponents (0 for Post-Norm, −0.5 for Pre-Norm) and
    /// DeepNorm's β/α = 1/(2√L) (−0.5) within ±0.3 for three depths; the final norm's
    /// division by the stream's root mean square accounts for Pre-Norm's and Peri-LN's
    /// depth dependence (‖dL/dW₂‖·√ms within ±0.15 of flat); Peri-LN adds normalized
    /// branches, so its stream grows at least as fast as Pre-Norm's; DeepNorm's α-weighted
    /// skip keeps blocks within 10% (W₂) and 30% (residual).
    fn check(cfg: &Config, seed: u64) {
        let m = PreVsPostNorm::measure(cfg, seed).expect("measures");
        let r = PreVsPostNorm::run(cfg, seed).expect("runs");
        check_shape(&r, ID);
        let (post, pre, peri, deep) = (
            m.of(Arrangement::PostNorm),
            m.of(Arrangement::PreNorm),
            m.of(Arrangement::PeriNorm),
            m.of(Arrangement::DeepNorm),
        );
        let pre_res = pre.residual_last_over_first().median;
        assert!(pre_res < 0.5 && pre_res > 0.02, "Pre-Norm last/first {pre_res}");
        let post_res = post.residual_last_over_first().median;
        assert!(
            post_res > 0.25 && post_res < 4.0,
            "Post-Norm last/first {post_res}"
        );
        assert!(post.w2_exponent.median.abs() < 0.3, "{:?}", post.w2_exponent);
        assert!(
            (pre.w2_exponent.median + 0.5).abs() < 0.3,
            "{:?}",
            pre.w2_exponent
        );
        assert!(
            (deep.w2_exponent.median + 0.5).abs() < 0.3,
            "{:?}",
            deep.w2_exponent
        );
        assert!(pre.w2_exponent.median < post.w2_exponent.median - 0.2);
        for a in [pre, peri] {
            assert!(a.w2_times_scale_exponent.median.abs() < 0.15, "{a:?}");
            assert!(a.stream_exponent.median > 0.3, "{:?}", a.stream_exponent);
        }
        // Post-Norm and DeepNorm end in a norm: the stream leaving the last block has
        // mean square 1 (LayerNorm output, γ = 1, β = 0) up to f32 rounding and eps.
        for a in [post, deep] {
            for d in &a.depths {
                assert!((d.stream_ms.median - 1.0).abs() < 1e-3, "{:?}", d.stream_ms);
            }
        }
        assert!(peri.stream_exponent.median >= pre.stream_exponent.median - 0.1);
        assert!(post.deepest().last_w2.median > 1.5 * pre.deepest().last_w2.median);
        assert!((deep.w2_last_over_first().median - 1.0).abs() < 0.1);
        assert!((deep.residual_last_over_first().median - 1.0).abs() < 0.3);
        // Quartiles are ordered; profiles start at exactly 1 and cover every block.
        for a in &m.arrangements {
            for s in [a.w2_exponent, a.stream_exponent] {
                assert!(s.q1 <= s.median && s.median <= s.q3, "{s:?}");
            }
            let depths: Vec<usize> = a.depths.iter().map(|d| d.depth).collect();
            assert_eq!(depths, cfg.depths);
            let l_max = cfg.depths[cfg.depths.len() - 1];
            let p = &a.profiles;
            assert_eq!(
                (p.w2.len(), p.residual.len(), p.stream_ms.len()),
                (l_max, l_max, l_max)
            );
            let one = Spread {
                q1: 1.0,
                median: 1.0,
                q3: 1.0,
            };
            assert_eq!((p.w2[0], p.residual[0]), (one, one));
        }
        // One statistic in the findings and the figure: the per-block panels' last points
        // are the last/first findings, the depth panel's last points the last-block medians.
        let value = |name: &str| r.findings.iter().find(|f| f.name == name).map(|f| f.value);
        let PanelContent::Lines { series, .. } = &r.figure.panels[1].content else {
            panic!("panel 1 is lines");
        };
        for (s, a) in series.iter().zip(&m.arrangements) {
            let key = format!("{}_w2_last_over_first", a.arrangement.key());
            assert_eq!(s.y.last().copied(), value(&key));
        }
        let PanelContent::Lines { series, .. } = &r.figure.panels[2].content else {
            panic!("panel 2 is lines");
        };
        assert_eq!(series[1].y.last().copied(), value("pre_residual_last_over_first"));
        let PanelContent::Lines { series, .. } = &r.figure.panels[3].content else {
            panic!("panel 3 is lines");
        };
        assert_eq!(
            series[0].y.last().copied(),
            Some(value("post_over_pre_last_w2").unwrap() * series[1].y.last().unwrap())
        );
        assert!(matches!(r.figure.panels[0].content, PanelContent::Diagram(_)));
        assert!(r.findings.iter().all(|f| !f.label.is_empty()));
        assert!(r.findings.iter().any(|f| f.refs.contains(&Reference::Kim2025)));
    }

    /// Every parameter of a stack, by name, as f64.
    fn params(stack: &TransformerStack<f32>) -> Vec<(String, Vec<f64>)> {
        let mut out = Vec::new();
        stack.visit_params(&mut |n, p| out.push((n.to_owned(), p.iter().map(|&v| f64::from(v)).collect())));
        out
    }

    /// The stacks built from one drawn Post-Norm stack are the ones `TransformerStack::new`
    /// builds from the same generator state: Post-Norm, Pre-Norm and Peri-LN exactly (with
    /// their final norms), DeepNorm to within one f32 rounding of each weight.
    #[test]
    fn stacks_from_one_draw_match_fresh_stacks() {
        let cfg = Config {
            depths: vec![2, 3],
            ..Config::small()
        };
        let d = draw(&cfg, 5).expect("draws");
        for depth in [2, 3] {
            for a in Arrangement::ALL {
                let built = stack(&cfg, a, depth, &d.blocks).expect("builds");
                // The same generator state after the input and target draws.
                let mut rng = ChaCha8Rng::seed_from_u64(5);
                for _ in 0..2 * cfg.batch * cfg.seq_len * cfg.d_model {
                    normal(&mut rng);
                }
                let sc = StackConfig::new(
                    depth,
                    cfg.d_model,
                    cfg.n_heads,
                    a.placement(depth),
                    NormKind::LayerNorm,
                );
                let fresh = TransformerStack::<f32>::new(&sc, &mut rng).expect("builds");
                if a != Arrangement::DeepNorm {
                    assert_eq!(built, fresh, "{a:?}, depth {depth}");
                    continue;
                }
                assert_eq!(built.final_norm, fresh.final_norm);
                assert!(
                    built
                        .blocks
                        .iter()
                        .zip(&fresh.blocks)
                        .all(|(a, b)| a.placement == b.placement)
                );
                let (pa, pb) = (params(&built), params(&fresh));
                assert_eq!(pa.len(), pb.len());
                for ((na, va), (nb, vb)) in pa.iter().zip(&pb) {
                    assert_eq!(na, nb);
                    for (a, b) in va.iter().zip(vb) {
                        assert!((a - b).abs() <= 2.5e-7 * b.abs(), "{na}: {a} vs {b}");
                    }
                }
            }
        }
    }

    /// One forward of the deepest stack serving every depth, with the backward through the
    /// last block only at the shallower depths, gives, bit for bit, what a forward and
    /// backward of each depth's own `TransformerStack` gives.
    #[test]
    fn shared_forward_equals_each_stack_alone() {
        let cfg = Config {
            depths: vec![1, 3, 4],
            ..Config::small()
        };
        let d = draw(&cfg, 9).expect("draws");
        for a in Arrangement::ALL {
            let got = samples(&cfg, a, &d).expect("samples");
            for (s, &depth) in got.iter().zip(&cfg.depths) {
                let st = stack(&cfg, a, depth, &d.blocks).expect("builds");
                let (y, cache) = st.forward(&d.x).expect("forward");
                let (_, dy) = mse_loss(&y, &d.t).expect("loss");
                let (_, grads) = st.backward(&cache, &dy).expect("backward");
                // The study's own norm (f64 sums in its order) of the stack's gradients.
                let w2: Vec<f64> = grads
                    .blocks
                    .iter()
                    .map(|b| norm_f64(&b.ffn.lin2.weight))
                    .collect();
                let residual: Vec<f64> = grads.d_residual.iter().map(|g| norm_f64(g)).collect();
                assert_eq!(Some(&s.last_w2), w2.last(), "{a:?} at {depth}");
                // Only the deepest stack is backpropagated through every block.
                match &s.per_block {
                    Some(p) => {
                        assert_eq!(depth, 4);
                        assert_eq!(p.w2, w2, "{a:?} at {depth}");
                        assert_eq!(p.residual, residual, "{a:?} at {depth}");
                    }
                    None => assert_ne!(depth, 4),
                }
            }
        }
    }

    #[test]
    fn same_bytes_on_one_and_two_threads() {
        let cfg = Config {
            depths: vec![2, 4],
            inits: 3,
            ..Config::small()
        };
        let json = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool");
            let r = pool.install(|| PreVsPostNorm::run(&cfg, 42)).expect("runs");
            serde_json::to_string(&r).expect("serializes")
        };
        assert_eq!(json(1), json(2));
    }

    #[test]
    fn claims_hold_on_small_configs() {
        for seed in [42, 7] {
            check(&Config::small(), seed);
        }
    }

    #[test]
    fn deterministic_per_seed() {
        let cfg = Config {
            depths: vec![2, 4],
            inits: 2,
            ..Config::small()
        };
        check_determinism(|s| PreVsPostNorm::run(&cfg, s));
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let c = Config::small;
        let run = |cfg: Config| PreVsPostNorm::run(&cfg, 1);
        check_invalid(
            run(Config {
                depths: vec![4],
                ..c()
            }),
            "depths",
        );
        check_invalid(
            run(Config {
                depths: vec![0, 4],
                ..c()
            }),
            "depths",
        );
        check_invalid(
            run(Config {
                depths: vec![4, 2],
                ..c()
            }),
            "depths",
        );
        check_invalid(run(Config { d_model: 1, ..c() }), "d_model");
        check_invalid(run(Config { n_heads: 0, ..c() }), "n_heads");
        check_invalid(run(Config { n_heads: 3, ..c() }), "n_heads");
        check_invalid(run(Config { seq_len: 0, ..c() }), "seq_len");
        check_invalid(run(Config { batch: 0, ..c() }), "batch");
        check_invalid(run(Config { inits: 0, ..c() }), "inits");
    }
}
