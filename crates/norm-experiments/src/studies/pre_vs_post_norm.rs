//! Study 7 — Pre-Norm vs Post-Norm: where the norm sits in a transformer block, drawn as
//! a block diagram (Post-Norm: original Transformer, BERT; Pre-Norm: GPT-2, LLaMA,
//! Mistral), and what that does to the gradients at initialization. Stacks of real
//! blocks from `norm-autograd` (multi-head softmax attention, ReLU feed-forward,
//! LayerNorm) at several depths, Post-Norm, Pre-Norm (with the usual final norm) and
//! DeepNorm (Post-Norm with the residual scaled by α and a β-scaled init), one forward and
//! backward of a regression loss each, the median over several initializations. Per
//! block: the gradient norm of the second feed-forward weight and of the residual stream
//! entering the block. Set beside Xiong et al. 2020, Theorem 1: the last block's
//! feed-forward gradient stays about constant in depth for Post-Norm and falls like
//! 1/√L for Pre-Norm (the final norm divides by a residual stream that grows like √L).

use ndarray::Array3;
use norm_autograd::{
    Linear, Norm, NormKind, Placement, StackConfig, TransformerBlock, TransformerStack, mse_loss,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::common::{finding, normal, require_at_least, summary_finding};
use crate::format::sig;
use crate::result::{
    Block, BlockDiagram, BlockKind, DiagramColumn, Figure, LineSeries, LineStyle, Panel, PanelContent, Scale,
};
use crate::stats::norm_f64;
use crate::study::{Study, StudyConfig};
use crate::{StudyError, StudyResult, study_rng};

/// Stable id.
pub const ID: &str = "pre-vs-post-norm";
/// Title.
pub const TITLE: &str = "Pre-Norm vs Post-Norm";
/// The seed document's summary line.
pub const SUMMARY: &str = "Pre-Norm creates a direct gradient highway; standard in modern LLMs.";

/// Configuration of the Pre-Norm vs Post-Norm study.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Stack depths (numbers of blocks), increasing; the per-block panels show the last.
    pub depths: Vec<usize>,
    /// Model width D.
    pub d_model: usize,
    /// Attention heads (must divide `d_model`).
    pub n_heads: usize,
    /// Sequence length.
    pub seq_len: usize,
    /// Sequences per batch.
    pub batch: usize,
    /// Independent initializations (weights, input and target) per stack; the medians
    /// over them are reported.
    pub inits: usize,
}

impl Default for Config {
    /// The full-size study: depths 6, 12, 24; D = 64, 4 heads, sequences of 16, batch 2;
    /// median over 5 initializations.
    fn default() -> Self {
        Self {
            depths: vec![6, 12, 24],
            d_model: 64,
            n_heads: 4,
            seq_len: 16,
            batch: 2,
            inits: 5,
        }
    }
}

impl Config {
    /// A small config for tests: depths 3, 6, 12; D = 16, 2 heads, sequences of 8,
    /// batch 2; 3 initializations.
    pub fn small() -> Self {
        Self {
            depths: vec![3, 6, 12],
            d_model: 16,
            n_heads: 2,
            seq_len: 8,
            batch: 2,
            inits: 3,
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`StudyError::InvalidConfig`] for fewer than 2 depths, a depth of 0 or depths not
    /// strictly increasing, `d_model < 2`, `n_heads == 0` or not dividing `d_model`,
    /// `seq_len`, `batch` or `inits` 0.
    pub fn validate(&self) -> Result<(), StudyError> {
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

impl StudyConfig for Config {
    fn small() -> Self {
        Config::small()
    }

    fn validate(&self) -> Result<(), StudyError> {
        Config::validate(self)
    }
}

/// The study (registry type).
pub struct PreVsPostNorm;

/// Transitional: the whole result is the measurement until this study is split into
/// measure → findings → figure.
impl Study for PreVsPostNorm {
    const ID: &'static str = ID;
    const TITLE: &'static str = TITLE;
    const SUMMARY: &'static str = SUMMARY;
    type Config = Config;
    type Measurements = StudyResult;

    fn measure(cfg: &Config, seed: u64) -> Result<StudyResult, StudyError> {
        run(cfg, seed)
    }

    fn findings(_: &Config, m: &StudyResult) -> Vec<crate::result::Finding> {
        m.findings.clone()
    }

    fn explanation(_: &Config, m: &StudyResult) -> Vec<String> {
        m.explanation.clone()
    }

    fn figure(_: &Config, m: &StudyResult) -> Figure {
        m.figure.clone()
    }

    fn timings(m: &StudyResult) -> Vec<crate::result::Finding> {
        m.timings.clone()
    }
}

/// The three placements measured, with their keys and labels.
const PLACEMENTS: [(&str, &str); 3] = [
    ("post", "Post-Norm"),
    ("pre", "Pre-Norm"),
    ("deepnorm", "DeepNorm"),
];

/// The placement of index `k` of [`PLACEMENTS`] for a stack of `depth` blocks.
fn placement(k: usize, depth: usize) -> Placement {
    match k {
        0 => Placement::PostNorm,
        1 => Placement::PreNorm,
        _ => Placement::deepnorm_for(depth),
    }
}

/// Median of a non-empty slice (mean of the middle two for an even count).
fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

/// Per-block medians (over initializations) of one stack, and the medians of the
/// per-initialization last/first ratios.
#[derive(Debug, Clone)]
struct Profile {
    /// `‖dL/dW₂‖` per block (second feed-forward weight).
    w2: Vec<f64>,
    /// `‖dL/dx_l‖` per block (residual stream entering block l).
    residual: Vec<f64>,
    /// Median over initializations of `‖dL/dW₂‖` last block / first block.
    w2_ratio: f64,
    /// Median over initializations of `‖dL/dx‖` entering the last block / the first.
    residual_ratio: f64,
}

/// Gradient norms of one stack on one batch: `(‖dL/dW₂‖ per block, ‖dL/dx_l‖ per block)`.
fn gradients(
    stack: &TransformerStack<f32>,
    x: &Array3<f32>,
    t: &Array3<f32>,
) -> Result<(Vec<f64>, Vec<f64>), StudyError> {
    let (y, cache) = stack.forward(x)?;
    let (_, dy) = mse_loss(&y, t)?;
    let (_, grads) = stack.backward(&cache, &dy)?;
    // As `grads.ffn2_weight_norms()` and `grads.residual_grad_norms()`, in fewer passes.
    Ok((
        grads
            .blocks
            .iter()
            .map(|b| norm_f64(&b.ffn.lin2.weight))
            .collect(),
        grads.d_residual.iter().map(|g| norm_f64(g)).collect(),
    ))
}

/// One initialization: the input, the target, and the blocks of the deepest Post-Norm
/// stack; every shallower stack of this initialization is a prefix of these blocks.
struct Draw {
    /// Input `(batch, seq_len, d_model)`.
    x: Array3<f32>,
    /// Target, shaped like the input.
    t: Array3<f32>,
    /// `max(depths)` Post-Norm blocks, input side first.
    blocks: Vec<TransformerBlock<f32>>,
}

/// Draws one initialization from its own seed: input, target, then the blocks of the
/// deepest Post-Norm stack (Xavier-normal weights, drawn block by block).
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

/// The stack of placement `k` (index into [`PLACEMENTS`]) made of the first `depth` of
/// `blocks` (Post-Norm blocks at initialization). Post-Norm and Pre-Norm blocks are
/// initialized identically, so Pre-Norm is the same blocks with the placement switched
/// and the final norm added: the two differ only in where the norms sit. DeepNorm's init
/// multiplies the gain of the value, output and feed-forward weights by β, so its blocks
/// are these with those weights times β: the same standard normals, as
/// [`TransformerStack::new`] would draw them for DeepNorm from the same generator state
/// (up to one rounding of f32).
fn stack(
    cfg: &Config,
    k: usize,
    depth: usize,
    blocks: &[TransformerBlock<f32>],
) -> Result<TransformerStack<f32>, StudyError> {
    let mut blocks = blocks
        .get(..depth)
        .ok_or(StudyError::InvalidConfig {
            study: ID,
            field: "depths",
            value: format!("{:?}", cfg.depths),
            reason: "a depth exceeds the drawn stack",
        })?
        .to_vec();
    let place = placement(k, depth);
    if let Placement::DeepNorm { beta, .. } = place {
        for b in &mut blocks {
            b.attn.v = scaled(&b.attn.v, beta)?;
            b.attn.o = scaled(&b.attn.o, beta)?;
            b.ffn.lin1 = scaled(&b.ffn.lin1, beta)?;
            b.ffn.lin2 = scaled(&b.ffn.lin2, beta)?;
        }
    }
    for b in &mut blocks {
        b.placement = place;
    }
    let final_norm = match place {
        Placement::PreNorm => Some(Norm::new(NormKind::LayerNorm, cfg.d_model)?),
        _ => None,
    };
    Ok(TransformerStack { blocks, final_norm })
}

/// For every depth and placement, the per-block medians over the initializations of one
/// forward/backward of the MSE loss each; `profiles[k][i]` is placement `k` at depth `i`.
///
/// Every (depth, placement, initialization) is an independent job on the rayon pool;
/// `collect` keeps their order and each computes what it would alone, so the number of
/// threads changes no number.
fn measure(cfg: &Config, draws: &[Draw]) -> Result<Vec<Vec<Profile>>, StudyError> {
    let jobs: Vec<(usize, usize, usize)> = (0..cfg.depths.len())
        .flat_map(|i| (0..PLACEMENTS.len()).flat_map(move |k| (0..draws.len()).map(move |n| (i, k, n))))
        .collect();
    let runs = jobs
        .par_iter()
        .map(|&(i, k, n)| {
            let d = &draws[n];
            gradients(&stack(cfg, k, cfg.depths[i], &d.blocks)?, &d.x, &d.t)
        })
        .collect::<Result<Vec<(Vec<f64>, Vec<f64>)>, StudyError>>()?;
    // runs[(i·P + k)·inits + n], in the order of `jobs`.
    let per_block = |depth: usize, runs: &[Vec<f64>]| {
        (0..depth)
            .map(|l| {
                median(
                    &runs
                        .iter()
                        .filter_map(|r| r.get(l).copied())
                        .collect::<Vec<f64>>(),
                )
            })
            .collect::<Vec<f64>>()
    };
    let ratio = |runs: &[Vec<f64>]| median(&runs.iter().map(|r| last_over_first(r)).collect::<Vec<f64>>());
    Ok((0..PLACEMENTS.len())
        .map(|k| {
            cfg.depths
                .iter()
                .enumerate()
                .map(|(i, &depth)| {
                    let start = (i * PLACEMENTS.len() + k) * draws.len();
                    let chunk = runs.get(start..start + draws.len()).unwrap_or(&[]);
                    let w2: Vec<Vec<f64>> = chunk.iter().map(|r| r.0.clone()).collect();
                    let res: Vec<Vec<f64>> = chunk.iter().map(|r| r.1.clone()).collect();
                    Profile {
                        w2: per_block(depth, &w2),
                        residual: per_block(depth, &res),
                        w2_ratio: ratio(&w2),
                        residual_ratio: ratio(&res),
                    }
                })
                .collect()
        })
        .collect())
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

/// `last / first` of a profile.
fn last_over_first(v: &[f64]) -> f64 {
    match (v.first(), v.last()) {
        (Some(a), Some(b)) => b / a,
        _ => f64::NAN,
    }
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

/// The block diagram of both placements (bottom to top).
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

/// Runs the study: the diagram, then for every placement and depth `inits` stacks at
/// initialization, with per-block medians of `‖dL/dW₂‖` and `‖dL/dx_l‖`.
///
/// ```text
/// Post-Norm: h = LN(x + Attn(x)),      y = LN(h + FFN(h))
/// Pre-Norm:  h = x + Attn(LN(x)),      y = h + FFN(LN(h))      (final LN after the stack)
/// DeepNorm:  h = LN(α·x + Attn(x)),    y = LN(α·h + FFN(h)),   α = (2N)^¼, init gain β = (8N)^−¼
/// loss = MSE(stack(x), t),  x, t ~ N(0, 1)
/// ```
///
/// # Errors
/// [`StudyError::InvalidConfig`] from [`Config::validate`]; [`StudyError::Grad`] if a
/// layer refuses its input (it cannot for a valid config).
///
/// # Example
/// ```
/// use norm_experiments::studies::pre_vs_post_norm::{run, Config};
/// let cfg = Config { depths: vec![1, 2], inits: 1, ..Config::small() };
/// let r = run(&cfg, 42)?;
/// assert!(r.findings.iter().any(|f| f.summary));
/// # Ok::<(), norm_experiments::StudyError>(())
/// ```
pub fn run(cfg: &Config, seed: u64) -> Result<StudyResult, StudyError> {
    cfg.validate()?;
    let mut rng = study_rng(seed, ID);
    // One seed per initialization, shared by the depths and the placements: each sees the
    // same input, target and random draws, and a shallower stack is the first blocks of
    // the deepest (common random numbers: the depth trend is not blurred by new draws).
    let seeds: Vec<u64> = (0..cfg.inits).map(|_| rng.random()).collect();
    let draws = seeds
        .par_iter()
        .map(|&s| draw(cfg, s))
        .collect::<Result<Vec<Draw>, StudyError>>()?;
    // profiles[k][i]: placement k, depth i.
    let profiles = measure(cfg, &draws)?;
    let depths_f: Vec<f64> = cfg.depths.iter().map(|&d| d as f64).collect();
    let deepest = cfg.depths.len() - 1;
    let l_max = cfg.depths[deepest];

    // Last block's ‖dL/dW₂‖ against depth, its log-log slope, and last/first ratios.
    let last_w2: Vec<Vec<f64>> = profiles
        .iter()
        .map(|p| {
            p.iter()
                .map(|pr| pr.w2.last().copied().unwrap_or(f64::NAN))
                .collect()
        })
        .collect();
    let slopes: Vec<f64> = last_w2.iter().map(|v| loglog_slope(&depths_f, v)).collect();
    let w2_ratio: Vec<Vec<f64>> = profiles
        .iter()
        .map(|p| p.iter().map(|pr| pr.w2_ratio).collect())
        .collect();
    let res_ratio: Vec<Vec<f64>> = profiles
        .iter()
        .map(|p| p.iter().map(|pr| pr.residual_ratio).collect())
        .collect();
    let list = |v: &[f64]| {
        v.iter()
            .zip(&cfg.depths)
            .map(|(x, d)| format!("{} at L = {d}", sig(*x, 3)))
            .collect::<Vec<_>>()
            .join(", ")
    };

    let mut findings = Vec::new();
    let (post, pre, deep) = (0, 1, 2);
    let (r_pre, r_post, r_deep) = (
        res_ratio[pre][deepest],
        res_ratio[post][deepest],
        res_ratio[deep][deepest],
    );
    // Post-Norm's residual gradient along the deepest stack: where its minimum falls.
    let post_res = &profiles[post][deepest].residual;
    let (dip_block, dip) =
        post_res.iter().enumerate().fold(
            (0, f64::INFINITY),
            |(bi, bv), (i, &v)| if v < bv { (i, v) } else { (bi, bv) },
        );
    let post_last = post_res.last().copied().unwrap_or(f64::NAN);
    let post_first = post_res.first().copied().unwrap_or(f64::NAN);
    findings.push(summary_finding(
        "pre_residual_last_over_first",
        r_pre,
        "ratio",
        format!(
            "Gradient highway: in a {l_max}-block Pre-Norm stack the gradient of the residual \
             stream does not fade on its way to the input: last/first = {} (median over {} \
             initializations), so the gradient entering the first block is {} the one \
             entering the last, because every sublayer adds its own path to the identity of the \
             un-normalized skip. Post-Norm, whose residual stream passes through a norm in every \
             sublayer, has last/first = {}: the gradient reaching the first block is {} the last \
             block's, and nowhere along the stack is it more than {}× below the last block's: a \
             few-fold change at initialization, not a vanishing by orders of magnitude. DeepNorm: {}.",
            sig(r_pre, 3),
            cfg.inits,
            fold(r_pre),
            sig(r_post, 3),
            fold(r_post),
            sig(post_last / dip, 2),
            sig(r_deep, 3)
        ),
    ));
    let dip_text = if dip_block == 0 {
        format!(
            "falls all the way from the last block ({}) to the first ({}, {}× of the last): \
             the vanishing of the usual telling.",
            sig(post_last, 3),
            sig(post_first, 3),
            sig(post_first / post_last, 2)
        )
    } else if dip_block + 1 == l_max {
        format!(
            "only grows from the last block ({}) towards the first ({}).",
            sig(post_last, 3),
            sig(post_first, 3)
        )
    } else {
        format!(
            "is not monotone: going down from the last block ({}) it falls to {} at block {} \
             ({}× of the last), then rises again to {} at the first block. The fall from the \
             output is the vanishing of the usual telling; here it stops at block {} and turns, \
             which the last/first ratio alone does not show.",
            sig(post_last, 3),
            sig(dip, 3),
            dip_block + 1,
            sig(dip / post_last, 2),
            sig(post_first, 3),
            dip_block + 1
        )
    };
    findings.push(finding(
        "post_residual_dip",
        dip / post_last,
        "ratio",
        format!("Post-Norm's residual-stream gradient (L = {l_max}, median over initializations) {dip_text}"),
    ));
    let post_over_pre = last_w2[post][deepest] / last_w2[pre][deepest];
    findings.push(finding(
        "post_over_pre_last_w2",
        post_over_pre,
        "×",
        format!(
            "At L = {l_max} the last block's ‖dL/dW₂‖ is {}× larger in Post-Norm ({}) than in \
             Pre-Norm ({}): the large output-side gradients Xiong et al. hold responsible for \
             Post-Norm's need of a learning-rate warm-up.",
            sig(post_over_pre, 3),
            sig(last_w2[post][deepest], 3),
            sig(last_w2[pre][deepest], 3)
        ),
    ));
    for (k, (key, label)) in PLACEMENTS.iter().enumerate() {
        let prediction = match k {
            0 => "Xiong et al.: about constant, exponent 0",
            1 => "Xiong et al.: ∝ 1/√L, exponent −0.5",
            // W₂'s input scales with β and the norm after α·h + FFN(h) divides by ≈ α:
            // β/α = (8N)^(−1/4)/(2N)^(1/4) = 1/(2√N).
            _ => "from DeepNorm's constants, β/α = 1/(2√L): exponent −0.5",
        };
        findings.push(finding(
            &format!("{key}_last_w2_depth_exponent"),
            slopes[k],
            "exponent",
            format!(
                "{label}: the last block's ‖dL/dW₂‖ is {}; as a power of depth it goes like \
                 L^{} ({prediction}).",
                list(&last_w2[k]),
                sig(slopes[k], 2)
            ),
        ));
        findings.push(finding(
            &format!("{key}_w2_last_over_first"),
            w2_ratio[k][deepest],
            "ratio",
            format!(
                "{label}: ‖dL/dW₂‖ of the last block over the first (median over initializations): \
                 {}; at L = {l_max} the first block's is {} the last's.",
                list(&w2_ratio[k]),
                fold(w2_ratio[k][deepest])
            ),
        ));
        if k != pre {
            findings.push(finding(
                &format!("{key}_residual_last_over_first"),
                res_ratio[k][deepest],
                "ratio",
                format!(
                    "{label}: residual-stream gradient entering the last block over the first \
                     (median over initializations): {}.",
                    list(&res_ratio[k])
                ),
            ));
        }
    }

    let blocks_x: Vec<f64> = (1..=l_max).map(|l| l as f64).collect();
    let per_block = |pick: fn(&Profile) -> &Vec<f64>| {
        PLACEMENTS
            .iter()
            .enumerate()
            .map(|(k, (_, label))| LineSeries {
                label: (*label).to_owned(),
                x: blocks_x.clone(),
                y: pick(&profiles[k][deepest]).clone(),
                style: LineStyle::Markers,
            })
            .collect::<Vec<_>>()
    };
    let mut depth_series: Vec<LineSeries> = PLACEMENTS
        .iter()
        .enumerate()
        .map(|(k, (_, label))| LineSeries {
            label: (*label).to_owned(),
            x: depths_f.clone(),
            y: last_w2[k].clone(),
            style: LineStyle::Markers,
        })
        .collect();
    // Xiong et al.'s scalings, anchored at the shallowest measured stack.
    let anchor = |k: usize| last_w2[k][0];
    depth_series.push(LineSeries {
        label: "Xiong et al.: Post-Norm ~ constant".to_owned(),
        x: depths_f.clone(),
        y: depths_f.iter().map(|_| anchor(post)).collect(),
        style: LineStyle::Dashed,
    });
    depth_series.push(LineSeries {
        label: "Xiong et al.: Pre-Norm ∝ 1/√L".to_owned(),
        x: depths_f.clone(),
        y: depths_f
            .iter()
            .map(|d| anchor(pre) * (depths_f[0] / d).sqrt())
            .collect(),
        style: LineStyle::Dashed,
    });
    let panels = vec![
        Panel {
            title: "Where Normalization Goes in a Transformer Block".to_owned(),
            x_label: String::new(),
            y_label: String::new(),
            content: PanelContent::Diagram(diagram()),
        },
        Panel {
            title: format!("Gradient of the Second FFN Weight per Block (L = {l_max}, at init)"),
            x_label: "block".to_owned(),
            y_label: "‖dL/dW₂‖ (median)".to_owned(),
            content: PanelContent::Lines {
                series: per_block(|p| &p.w2),
                x_scale: Scale::Linear,
                y_scale: Scale::Log,
            },
        },
        Panel {
            title: format!("Gradient of the Residual Stream per Block (L = {l_max}, at init)"),
            x_label: "block".to_owned(),
            y_label: "‖dL/dx_l‖ entering block l (median)".to_owned(),
            content: PanelContent::Lines {
                series: per_block(|p| &p.residual),
                x_scale: Scale::Linear,
                y_scale: Scale::Log,
            },
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
    ];

    Ok(StudyResult {
        id: ID.to_owned(),
        title: TITLE.to_owned(),
        explanation: vec![
            "Post-Norm (the original Transformer, BERT) normalizes after each residual addition, \
             so the residual stream itself passes through a norm in every sublayer. Pre-Norm \
             (GPT-2, LLaMA, Mistral) normalizes only the input of each sublayer and adds the \
             sublayer's output back to an un-normalized stream: from the loss to the first block \
             there is a path of plain additions, the \"gradient highway\". Pre-Norm stacks end \
             with a final norm."
                .to_owned(),
            format!(
                "The measurement builds stacks of {} real blocks (D = {}, {} heads of softmax \
                 attention, a ReLU feed-forward of width {}, LayerNorm) at initialization, runs one \
                 batch of {} random sequences of length {} forward and the mean squared error \
                 against random targets backward through the hand-written passes, and reports per \
                 block the median over {} initializations of the gradient norm of the second \
                 feed-forward weight W₂ and of the residual stream entering the block. DeepNorm \
                 is Post-Norm with the residual multiplied by α = (2N)^¼ and the value, output and \
                 feed-forward weights initialized β = (8N)^−¼ smaller. For each initialization \
                 the three placements see the same input, target and random draws; the Post-Norm and \
                 Pre-Norm stacks have identical weights and differ only in where the norms sit, and \
                 a shallower stack is the first blocks of the deepest one.",
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
                cfg.inits
            ),
            "Xiong et al. (2020, Theorem 1) bound the last block's W₂ gradient: about constant in \
             depth for Post-Norm, shrinking like 1/√L for Pre-Norm, because the final norm divides \
             by a residual stream whose scale grows like √L. The depth panel sets the measurement \
             beside those scalings."
                .to_owned(),
        ],
        figure: Figure {
            title: "Pre-Norm vs Post-Norm: Where Normalization Goes in a Transformer Block".to_owned(),
            panels,
            columns: 2,
        },
        config: toml::Table::new(),
        findings,
        timings: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_determinism, check_invalid, check_shape, statement, value};
    use norm_autograd::Module;

    #[test]
    fn diagram_has_both_placements_and_the_legend() {
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
                ("Pre-Norm", "GPT-2, LLaMA, Mistral")
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
        // Post-Norm: a norm right after each Add (the stream is normalized). Pre-Norm: each
        // skip leaves before a norm, which sits inside the branch; the last Add feeds the
        // output directly (the stream is never normalized inside the block).
        let post = &d.columns[0];
        for &(_, to) in &post.skips {
            assert_eq!(post.blocks[to + 1].kind, BlockKind::Norm);
        }
        let pre = &d.columns[1];
        for &(from, _) in &pre.skips {
            assert_eq!(pre.blocks[from].kind, BlockKind::Norm);
        }
        let last_add = pre.skips.iter().map(|s| s.1).max().expect("skips");
        assert_eq!(pre.blocks[last_add + 1].kind, BlockKind::Io);
    }

    #[test]
    fn median_and_slope() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        let x = [6.0, 12.0, 24.0];
        let y: Vec<f64> = x.iter().map(|v: &f64| 3.0 * v.powf(-0.5)).collect();
        assert!((loglog_slope(&x, &y) + 0.5).abs() < 1e-12);
    }

    /// Asserts the study's claims for one config and seed. Thresholds: Xiong et al.'s
    /// exponents (0 for Post-Norm, −0.5 for Pre-Norm) and DeepNorm's β/α = 1/(2√L)
    /// (−0.5), with ±0.35 for three depths and three initializations; the Pre-Norm
    /// highway (each block adds to an identity path) makes the first block's residual
    /// gradient at least twice the last's; DeepNorm's α-weighted skip keeps blocks within
    /// 10% (W₂) and 30% (residual) of each other.
    fn check(cfg: &Config, seed: u64) {
        let r = run(cfg, seed).expect("runs");
        check_shape(&r, ID);
        let pre_res = value(&r, "pre_residual_last_over_first");
        assert!(pre_res < 0.5 && pre_res > 0.02, "Pre-Norm last/first {pre_res}");
        // No vanishing in Post-Norm at initialization either: within a small factor.
        let post_res = value(&r, "post_residual_last_over_first");
        assert!(
            post_res > 0.25 && post_res < 4.0,
            "Post-Norm last/first {post_res}"
        );
        let (post_p, pre_p, deep_p) = (
            value(&r, "post_last_w2_depth_exponent"),
            value(&r, "pre_last_w2_depth_exponent"),
            value(&r, "deepnorm_last_w2_depth_exponent"),
        );
        assert!(post_p.abs() < 0.35, "Post-Norm exponent {post_p}");
        assert!((pre_p + 0.5).abs() < 0.35, "Pre-Norm exponent {pre_p}");
        assert!((deep_p + 0.5).abs() < 0.35, "DeepNorm exponent {deep_p}");
        assert!(pre_p < post_p - 0.2);
        assert!(value(&r, "post_over_pre_last_w2") > 1.5);
        assert!((value(&r, "deepnorm_w2_last_over_first") - 1.0).abs() < 0.1);
        // Post-Norm's smallest residual gradient: below the last block's (or equal), but
        // not by orders of magnitude.
        let dip = value(&r, "post_residual_dip");
        assert!(dip <= 1.0 && dip > 0.05, "Post-Norm dip {dip}");
        let deep_res = value(&r, "deepnorm_residual_last_over_first");
        assert!((deep_res - 1.0).abs() < 0.3, "DeepNorm residual {deep_res}");
        assert!(statement(&r, "pre_residual_last_over_first").contains(&sig(pre_res, 3)));
        // Per-block panels cover the deepest stack; the depth panel every depth.
        let last = *cfg.depths.last().expect("depths");
        let PanelContent::Lines { series, .. } = &r.figure.panels[1].content else {
            panic!("panel 1 is lines");
        };
        assert!(
            series
                .iter()
                .all(|s| s.y.len() == last && s.y.iter().all(|v| *v > 0.0))
        );
        let PanelContent::Lines { series, .. } = &r.figure.panels[3].content else {
            panic!("panel 3 is lines");
        };
        assert!(series.iter().all(|s| s.x.len() == cfg.depths.len()));
        assert!(matches!(r.figure.panels[0].content, PanelContent::Diagram(_)));
    }

    /// Every parameter of a stack, by name, as f64.
    fn params(stack: &TransformerStack<f32>) -> Vec<(String, Vec<f64>)> {
        let mut out = Vec::new();
        stack.visit_params(&mut |n, p| out.push((n.to_owned(), p.iter().map(|&v| f64::from(v)).collect())));
        out
    }

    /// The stacks built from one drawn Post-Norm stack are the ones `TransformerStack::new`
    /// builds from the same generator state: Post-Norm and Pre-Norm exactly (Pre-Norm with
    /// its final norm), DeepNorm to within one f32 rounding of each weight; a shallower
    /// stack is a prefix of a deeper one.
    #[test]
    fn stacks_from_one_draw_match_fresh_stacks() {
        let cfg = Config {
            depths: vec![2, 3],
            ..Config::small()
        };
        let d = draw(&cfg, 5).expect("draws");
        for depth in [2, 3] {
            for k in 0..PLACEMENTS.len() {
                let built = stack(&cfg, k, depth, &d.blocks).expect("builds");
                // The same generator state after the input and target draws.
                let mut rng = ChaCha8Rng::seed_from_u64(5);
                let n = cfg.batch * cfg.seq_len * cfg.d_model;
                for _ in 0..2 * n {
                    normal(&mut rng);
                }
                let sc = StackConfig::new(
                    depth,
                    cfg.d_model,
                    cfg.n_heads,
                    placement(k, depth),
                    NormKind::LayerNorm,
                );
                let fresh = TransformerStack::<f32>::new(&sc, &mut rng).expect("builds");
                if k < 2 {
                    assert_eq!(built, fresh, "placement {k}, depth {depth}");
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
            let r = pool.install(|| run(&cfg, 42)).expect("runs");
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
        check_determinism(|s| {
            run(
                &Config {
                    depths: vec![2, 4],
                    inits: 2,
                    ..Config::small()
                },
                s,
            )
        });
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let c = Config::small;
        check_invalid(
            run(
                &Config {
                    depths: vec![4],
                    ..c()
                },
                1,
            ),
            "depths",
        );
        check_invalid(
            run(
                &Config {
                    depths: vec![0, 4],
                    ..c()
                },
                1,
            ),
            "depths",
        );
        check_invalid(
            run(
                &Config {
                    depths: vec![4, 2],
                    ..c()
                },
                1,
            ),
            "depths",
        );
        check_invalid(run(&Config { d_model: 1, ..c() }, 1), "d_model");
        check_invalid(run(&Config { n_heads: 0, ..c() }, 1), "n_heads");
        check_invalid(run(&Config { n_heads: 3, ..c() }, 1), "n_heads");
        check_invalid(run(&Config { seq_len: 0, ..c() }, 1), "seq_len");
        check_invalid(run(&Config { batch: 0, ..c() }, 1), "batch");
        check_invalid(run(&Config { inits: 0, ..c() }, 1), "inits");
    }
}
