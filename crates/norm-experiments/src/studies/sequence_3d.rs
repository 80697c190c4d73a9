//! Study 8 — (B, L, D) sequences like transformer activations: positions with very
//! different scales and offsets, plus a few large outlier features. LayerNorm and RMSNorm
//! normalize each (batch, position) vector on its own, so the heatmaps of per-position
//! statistics go flat after them (drawn on the input's colour scale), and a sequence
//! normalized alone equals its slice of the batched result bit for bit: the same
//! computation at training (batched) and inference (one sequence). BatchNorm, implemented
//! here with training-mode statistics over (batch, position) per feature, is the
//! contrast: its output for a sequence changes when the other sequences of the batch
//! change, and it leaves per-position scales unequal (but evens out the features).

use ndarray::{Array3, ArrayView3, Axis, s};
use norm_core::{LayerNorm, RmsNorm};
use serde::Serialize;

use crate::common::{
    finding, normal, require_at_least, require_non_negative, require_range, summary_finding, uniform,
};
use crate::format::{g, sig};
use crate::references::Reference;
use crate::result::{
    Figure, Finding, Heatmap, LineSeries, LineStyle, Panel, PanelContent, Scale, ScatterSeries,
};
use crate::stats::{max_abs, mean, min_max, row_stats};
use crate::study::{Study, StudyConfig};
use crate::{StudyError, study_rng};

/// Stable id.
pub const ID: &str = "sequence-3d";

/// Configuration of the 3D-sequence study.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Sequences in the batch (B).
    pub batch: usize,
    /// Positions per sequence (L).
    pub seq_len: usize,
    /// Features per position (D, the normalized axis).
    pub dim: usize,
    /// Each position's scale is drawn log-uniformly from this range (> 0), shared by the
    /// batch, then jittered per sequence by a factor in [0.8, 1.25].
    pub position_scale_range: (f64, f64),
    /// Standard deviation of each (batch, position) mean offset, in units of its scale.
    pub offset_std: f64,
    /// Number of outlier features.
    pub outlier_features: usize,
    /// Outlier offset (± this, in units of the position's scale).
    pub outlier_size: f64,
    /// LayerNorm eps.
    pub ln_eps: f64,
    /// RMSNorm eps.
    pub rms_eps: f64,
    /// BatchNorm eps.
    pub bn_eps: f64,
}

impl Default for Config {
    /// The full-size study: B = 8, L = 64, D = 128 with 3 outlier features.
    fn default() -> Self {
        Self {
            batch: 8,
            seq_len: 64,
            dim: 128,
            position_scale_range: (0.25, 4.0),
            offset_std: 0.5,
            outlier_features: 3,
            outlier_size: 10.0,
            ln_eps: 1e-5,
            rms_eps: 1e-6,
            bn_eps: 1e-5,
        }
    }
}

impl StudyConfig for Config {
    /// A small config for tests: B = 4, L = 16, D = 32.
    fn small() -> Self {
        Self {
            batch: 4,
            seq_len: 16,
            dim: 32,
            outlier_features: 2,
            ..Self::default()
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`StudyError::InvalidConfig`] for `batch < 2` (the BatchNorm contrast needs other
    /// sequences), `seq_len == 0`, `dim < 2`, more outlier features than `dim`, a bad
    /// scale range, a negative or non-finite offset, outlier size or eps.
    fn validate(&self) -> Result<(), StudyError> {
        require_at_least(
            ID,
            "batch",
            self.batch,
            2,
            "the BatchNorm contrast needs other sequences",
        )?;
        require_at_least(ID, "seq_len", self.seq_len, 1, "need at least one position")?;
        require_at_least(ID, "dim", self.dim, 2, "a variance needs at least 2 features")?;
        if self.outlier_features > self.dim {
            return Err(StudyError::InvalidConfig {
                study: ID,
                field: "outlier_features",
                value: format!("{} (dim = {})", self.outlier_features, self.dim),
                reason: "cannot exceed dim",
            });
        }
        require_range(ID, "position_scale_range", self.position_scale_range, true)?;
        require_non_negative(ID, "offset_std", self.offset_std)?;
        require_non_negative(ID, "outlier_size", self.outlier_size)?;
        require_non_negative(ID, "ln_eps", self.ln_eps)?;
        require_non_negative(ID, "rms_eps", self.rms_eps)?;
        require_non_negative(ID, "bn_eps", self.bn_eps)
    }
}

/// The study (registry type).
///
/// # Example
/// ```
/// use norm_experiments::{Study, StudyConfig};
/// use norm_experiments::studies::sequence_3d::{Config, Sequence3d};
/// let m = Sequence3d::measure(&Config::small(), 42)?;
/// assert_eq!(m.alone_vs_batch.layer_norm, 0.0);
/// assert!(m.batch_change.batch_norm > 0.0);
/// # Ok::<(), norm_experiments::StudyError>(())
/// ```
pub struct Sequence3d;

/// Mean and std over the features at every (sequence, position): two B × L matrices,
/// row-major.
#[derive(Debug, Clone, Serialize)]
pub struct PositionStats {
    /// Per-(sequence, position) mean over the features.
    pub mean: Vec<f64>,
    /// Per-(sequence, position) std over the features.
    pub std: Vec<f64>,
}

/// One number for each of the three norms.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PerNorm {
    /// LayerNorm.
    pub layer_norm: f64,
    /// RMSNorm.
    pub rms_norm: f64,
    /// BatchNorm (training-mode statistics).
    pub batch_norm: f64,
}

/// One profile for each of the three norms' outputs.
#[derive(Debug, Clone, Serialize)]
pub struct Profiles {
    /// LayerNorm output.
    pub layer_norm: Vec<f64>,
    /// RMSNorm output.
    pub rms_norm: Vec<f64>,
    /// BatchNorm output.
    pub batch_norm: Vec<f64>,
}

/// Everything the 3D-sequence study measures.
#[derive(Debug, Clone, Serialize)]
pub struct Measurements {
    /// (B, L, D).
    pub shape: (usize, usize, usize),
    /// Features that carry the outlier offset.
    pub outlier_features: Vec<usize>,
    /// Per-position statistics of the input.
    pub input: PositionStats,
    /// ... of LayerNorm's output.
    pub layer_norm: PositionStats,
    /// ... of RMSNorm's output.
    pub rms_norm: PositionStats,
    /// ... of BatchNorm's output.
    pub batch_norm: PositionStats,
    /// Largest |difference| between each sequence normalized alone and its slice of the
    /// batched result (BatchNorm: one sequence's own training-mode statistics against
    /// the batch's).
    pub alone_vs_batch: PerNorm,
    /// Largest |change| of sequence 0's output when the other sequences are redrawn.
    pub batch_change: PerNorm,
    /// Mean |change| of sequence 0's BatchNorm output in that case.
    pub batch_norm_mean_change: f64,
    /// Per position of sequence 0: largest |change| over the features in that case.
    pub batch_change_per_position: Profiles,
    /// Per feature: mean |x| of the input over batch and positions.
    pub feature_mean_abs_input: Vec<f64>,
    /// Per feature: mean |y| of each norm's output over batch and positions.
    pub feature_mean_abs: Profiles,
}

impl Study for Sequence3d {
    const ID: &'static str = ID;
    const TITLE: &'static str = "3D Sequences";
    const SUMMARY: &'static str = "Both norms handle (B, L, D) naturally, normalizing per-position.";
    type Config = Config;
    type Measurements = Measurements;

    /// Draws the batch, normalizes it three ways, and measures per-position statistics,
    /// batch independence and per-feature profiles.
    ///
    /// ```text
    /// x[b,l,:] = s_bl · (z + m_bl + o),   z ~ N(0, I),  o = ±outlier on a few features
    /// LN / RMS: statistics over D for each (b, l);   BatchNorm: over (B, L) for each d
    /// ```
    fn measure(cfg: &Config, seed: u64) -> Result<Measurements, StudyError> {
        let (b, l, d) = (cfg.batch, cfg.seq_len, cfg.dim);
        let mut rng = study_rng(seed, ID);

        // Shared layout: log-uniform position scales, a few outlier features of random sign.
        let (ls_lo, ls_hi) = (cfg.position_scale_range.0.ln(), cfg.position_scale_range.1.ln());
        let position_scale: Vec<f64> = (0..l).map(|_| uniform(&mut rng, (ls_lo, ls_hi)).exp()).collect();
        // Outlier features: the first few of a partial Fisher-Yates shuffle of 0..d.
        let mut order: Vec<usize> = (0..d).collect();
        let mut outlier = vec![0.0; d];
        for i in 0..cfg.outlier_features {
            let j = i + ((uniform(&mut rng, (0.0, 1.0)) * (d - i) as f64) as usize).min(d - i - 1);
            order.swap(i, j);
            let sign = if uniform(&mut rng, (0.0, 1.0)) < 0.5 {
                -1.0
            } else {
                1.0
            };
            outlier[order[i]] = sign * cfg.outlier_size;
        }
        let mut outlier_features = order[..cfg.outlier_features].to_vec();
        outlier_features.sort_unstable();
        let layout = Layout {
            position_scale,
            outlier,
        };
        let mut data = Vec::with_capacity(b * l * d);
        for _ in 0..b {
            data.extend(draw_sequence(&mut rng, cfg, &layout));
        }
        let x = Array3::from_shape_fn((b, l, d), |(i, j, k)| data[(i * l + j) * d + k]);

        let ln = LayerNorm::<f64>::new(d)?.with_eps(cfg.ln_eps)?;
        let rms = RmsNorm::<f64>::new(d)?.with_eps(cfg.rms_eps)?;
        let y_ln = ln.forward(&x)?;
        let y_rms = rms.forward(&x)?;
        let y_bn = batch_norm_train(&x.view(), cfg.bn_eps);

        // Each sequence alone vs its slice of the batch.
        let mut alone = PerNorm {
            layer_norm: 0.0,
            rms_norm: 0.0,
            batch_norm: 0.0,
        };
        for i in 0..b {
            let xi = x.slice(s![i..i + 1, .., ..]);
            let slice = s![i..i + 1, .., ..];
            let a = &mut alone;
            a.layer_norm = a
                .layer_norm
                .max(max_diff(&ln.forward(&xi)?.view(), &y_ln.slice(slice)));
            a.rms_norm = a
                .rms_norm
                .max(max_diff(&rms.forward(&xi)?.view(), &y_rms.slice(slice)));
            a.batch_norm = a.batch_norm.max(max_diff(
                &batch_norm_train(&xi, cfg.bn_eps).view(),
                &y_bn.slice(slice),
            ));
        }

        // Same sequence 0, every other sequence redrawn.
        let mut other = data[..l * d].to_vec();
        for _ in 1..b {
            other.extend(draw_sequence(&mut rng, cfg, &layout));
        }
        let x2 = Array3::from_shape_fn((b, l, d), |(i, j, k)| other[(i * l + j) * d + k]);
        let (y_ln2, y_rms2) = (ln.forward(&x2)?, rms.forward(&x2)?);
        let y_bn2 = batch_norm_train(&x2.view(), cfg.bn_eps);
        let first = s![0..1, .., ..];
        let bn_delta = &y_bn2.slice(first) - &y_bn.slice(first);
        let per_pos = |a: &Array3<f64>, c: &Array3<f64>| -> Vec<f64> {
            (0..l)
                .map(|j| {
                    let (p, q) = (a.slice(s![0, j, ..]), c.slice(s![0, j, ..]));
                    max_abs(p.iter().zip(q.iter()).map(|(u, v)| u - v))
                })
                .collect()
        };
        let feature_mean_abs = |a: &Array3<f64>| -> Vec<f64> {
            (0..d)
                .map(|k| mean(&a.slice(s![.., .., k]).iter().map(|v| v.abs()).collect::<Vec<_>>()))
                .collect()
        };

        Ok(Measurements {
            shape: (b, l, d),
            outlier_features,
            input: position_stats(&x),
            layer_norm: position_stats(&y_ln),
            rms_norm: position_stats(&y_rms),
            batch_norm: position_stats(&y_bn),
            alone_vs_batch: alone,
            batch_change: PerNorm {
                layer_norm: max_diff(&y_ln2.slice(first), &y_ln.slice(first)),
                rms_norm: max_diff(&y_rms2.slice(first), &y_rms.slice(first)),
                batch_norm: max_abs(bn_delta.iter().copied()),
            },
            batch_norm_mean_change: mean(&bn_delta.iter().map(|v| v.abs()).collect::<Vec<_>>()),
            batch_change_per_position: Profiles {
                layer_norm: per_pos(&y_ln2, &y_ln),
                rms_norm: per_pos(&y_rms2, &y_rms),
                batch_norm: per_pos(&y_bn2, &y_bn),
            },
            feature_mean_abs_input: feature_mean_abs(&x),
            feature_mean_abs: Profiles {
                layer_norm: feature_mean_abs(&y_ln),
                rms_norm: feature_mean_abs(&y_rms),
                batch_norm: feature_mean_abs(&y_bn),
            },
        })
    }

    fn findings(_: &Config, m: &Measurements) -> Vec<Finding> {
        let (b, l, d) = m.shape;
        let positions = b * l;
        let (is_lo, is_hi) = min_max(m.input.std.iter().copied());
        let (im_lo, im_hi) = min_max(m.input.mean.iter().copied());
        let ln_mean_max = max_abs(m.layer_norm.mean.iter().copied());
        let (ls_lo, ls_hi) = min_max(m.layer_norm.std.iter().copied());
        let rms_dev = max_abs(
            m.rms_norm
                .mean
                .iter()
                .zip(&m.rms_norm.std)
                .map(|(mu, sd)| (mu * mu + sd * sd).sqrt() - 1.0),
        );
        let (rm_lo, rm_hi) = min_max(m.rms_norm.mean.iter().copied());
        let (rs_lo, rs_hi) = min_max(m.rms_norm.std.iter().copied());
        let (bs_lo, bs_hi) = min_max(m.batch_norm.std.iter().copied());
        let a = &m.alone_vs_batch;
        let c = &m.batch_change;
        let outlier_ratio = |p: &[f64]| outlier_ratio(p, &m.outlier_features);
        let f = &m.feature_mean_abs;
        vec![
            summary_finding(
                "alone_vs_batch_max_diff",
                a.layer_norm.max(a.rms_norm),
                "",
                format!(
                    "Both norms normalize each of the {positions} (batch, position) vectors on \
                     its own: every sequence normalized alone equals its slice of the batched \
                     ({b}, {l}, {d}) result exactly (max difference {} for LayerNorm, {} for \
                     RMSNorm), so training (batched) and inference (one sequence) compute the \
                     same thing. BatchNorm with one sequence's own statistics differs from its \
                     batched output by up to {}.",
                    g(a.layer_norm),
                    g(a.rms_norm),
                    sig(a.batch_norm, 3)
                ),
            )
            .labelled("Largest difference, one sequence alone vs its slice of the batch")
            .cite(&[Reference::Ba2016, Reference::ZhangSennrich2019]),
            finding(
                "ln_max_abs_position_mean",
                ln_mean_max,
                "",
                format!(
                    "After LayerNorm every position has |mean| ≤ {} and std in [{}, {}], \
                     although input per-position means span [{}, {}] and stds [{}, {}] (outlier \
                     features included).",
                    g(ln_mean_max),
                    sig(ls_lo, 7),
                    sig(ls_hi, 7),
                    g(im_lo),
                    g(im_hi),
                    g(is_lo),
                    g(is_hi)
                ),
            )
            .labelled("Largest |per-position mean| after LayerNorm")
            .cite(&[Reference::Ba2016]),
            finding(
                "rms_max_abs_position_rms_minus_one",
                rms_dev,
                "",
                format!(
                    "After RMSNorm every position has RMS 1 within {}, but keeps its mean: \
                     per-position means span [{}, {}] and stds [{}, {}] (mean² + std² = RMS² ≈ 1).",
                    g(rms_dev),
                    sig(rm_lo, 3),
                    sig(rm_hi, 3),
                    sig(rs_lo, 3),
                    sig(rs_hi, 3)
                ),
            )
            .labelled("Largest |per-position RMS − 1| after RMSNorm")
            .cite(&[Reference::ZhangSennrich2019]),
            finding(
                "norm_change_when_batch_changes",
                c.layer_norm.max(c.rms_norm),
                "",
                format!(
                    "When the other {} sequences are redrawn, sequence 0's LayerNorm output \
                     changes by {} and its RMSNorm output by {}.",
                    b - 1,
                    g(c.layer_norm),
                    g(c.rms_norm)
                ),
            )
            .labelled("Change of a sequence's LayerNorm/RMSNorm output when the batch changes"),
            finding(
                "batchnorm_change_when_batch_changes",
                c.batch_norm,
                "",
                format!(
                    "BatchNorm with training-mode statistics (per feature, over batch and \
                     positions) changes sequence 0's output by up to {} (mean |change| {}) when \
                     the other {} sequences are redrawn: its output depends on the batch.",
                    sig(c.batch_norm, 3),
                    sig(m.batch_norm_mean_change, 3),
                    b - 1
                ),
            )
            .labelled("Change of a sequence's BatchNorm output when the batch changes")
            .cite(&[Reference::Ioffe2015]),
            finding(
                "batchnorm_position_std_spread",
                bs_hi / bs_lo,
                "max/min",
                format!(
                    "BatchNorm does not equalize positions: after it, per-position stds still \
                     span [{}, {}], a factor {} (input: a factor {}).",
                    sig(bs_lo, 3),
                    sig(bs_hi, 3),
                    sig(bs_hi / bs_lo, 3),
                    sig(is_hi / is_lo, 3)
                ),
            )
            .labelled("Spread of per-position std after BatchNorm (max/min)")
            .cite(&[Reference::Ioffe2015]),
            finding(
                "ln_outlier_feature_ratio",
                outlier_ratio(&f.layer_norm),
                "×",
                format!(
                    "Per-position norms leave the outlier features standing out: their mean |y| \
                     is {}× the median feature's after LayerNorm and {}× after RMSNorm (input: \
                     {}×), while BatchNorm, which scales each feature by its own statistics, \
                     brings it to {}×.",
                    sig(outlier_ratio(&f.layer_norm), 3),
                    sig(outlier_ratio(&f.rms_norm), 3),
                    sig(outlier_ratio(&m.feature_mean_abs_input), 3),
                    sig(outlier_ratio(&f.batch_norm), 3)
                ),
            )
            .labelled("Outlier features' mean |y| after LayerNorm, relative to the median feature"),
        ]
    }

    fn explanation(cfg: &Config, m: &Measurements) -> Vec<String> {
        let (b, l, d) = m.shape;
        vec![
            format!(
                "A batch of {b} sequences of {l} positions with {d} features, built like \
                 transformer activations: each position has its own scale (log-uniform in [{}, \
                 {}]) and mean offset, and {} features carry a large offset of ±{} (outlier \
                 features). Heatmaps show the mean and standard deviation over the features at \
                 every (sequence, position); the four heatmaps of a row share one colour scale.",
                cfg.position_scale_range.0,
                cfg.position_scale_range.1,
                cfg.outlier_features,
                cfg.outlier_size
            ),
            "LayerNorm and RMSNorm take their statistics over the feature axis of each position, \
             so the (B, L, D) array is just B·L independent rows: on the input's colour scale \
             LayerNorm's heatmaps are flat (mean 0, std 1 at every position); RMSNorm's RMS is 1 \
             everywhere but each position keeps its own mean (pushed away from 0 by the outlier \
             features). No statistic crosses positions or sequences, so a sequence normalized \
             alone is bit for bit its slice of the batch. Nothing crosses features either: the \
             outlier features still stand out after both."
                .to_owned(),
            "BatchNorm, the contrast, takes each feature's statistics over the batch and the \
             positions. Its output for a sequence depends on which other sequences share the \
             batch, and it leaves positions of different scale unequal: the reason transformers \
             use per-position norms."
                .to_owned(),
        ]
    }

    fn caption(_: &Config, _: &Measurements) -> String {
        "(a)–(d) and (e)–(h) each share one colour scale: compare every norm's per-position \
         mean and standard deviation with the input's. (i): how much sequence 0's output moves \
         when the rest of the batch is redrawn; a line at 0 means the output does not depend \
         on the other sequences. (j): each position's output spread against its input spread. \
         (k) and (l): the input's outlier features and what each norm leaves of them."
            .to_owned()
    }

    fn figure(_: &Config, m: &Measurements) -> Figure {
        let (b, l, d) = m.shape;
        let stats = [
            ("Input", &m.input),
            ("LayerNorm", &m.layer_norm),
            ("RMSNorm", &m.rms_norm),
            ("BatchNorm", &m.batch_norm),
        ];
        let mut panels = Vec::new();
        for (what, pick, bar) in [
            (
                "Mean",
                (|p: &PositionStats| p.mean.clone()) as fn(&PositionStats) -> Vec<f64>,
                "mean over features",
            ),
            ("Std", |p: &PositionStats| p.std.clone(), "std over features"),
        ] {
            // One colour scale for the four panels of a row.
            let range = min_max(stats.iter().flat_map(|(_, s)| pick(s)));
            for (name, s) in &stats {
                panels.push(heatmap(
                    &format!("{name}: Per-Position {what}"),
                    b,
                    l,
                    pick(s),
                    bar,
                    range,
                ));
            }
        }
        let line = |label: &str, x: &[f64], y: &[f64], style| LineSeries {
            label: label.to_owned(),
            x: x.to_vec(),
            y: y.to_vec(),
            style,
        };
        let pos: Vec<f64> = (0..l).map(|j| j as f64).collect();
        let feat: Vec<f64> = (0..d).map(|k| k as f64).collect();
        let c = &m.batch_change_per_position;
        let f = &m.feature_mean_abs;
        panels.push(Panel {
            title: "Sequence 0's Output When the Rest of the Batch Changes".to_owned(),
            x_label: "position".to_owned(),
            y_label: "max |change| over features".to_owned(),
            content: PanelContent::Lines {
                series: vec![
                    line("LayerNorm", &pos, &c.layer_norm, LineStyle::Markers),
                    line("RMSNorm", &pos, &c.rms_norm, LineStyle::Markers),
                    line(
                        "BatchNorm (training mode)",
                        &pos,
                        &c.batch_norm,
                        LineStyle::Markers,
                    ),
                ],
                x_scale: Scale::Linear,
                y_scale: Scale::Linear,
            },
        });
        panels.push(Panel {
            title: "Per-Position Std: Output vs Input".to_owned(),
            x_label: "input std over features".to_owned(),
            y_label: "output std over features".to_owned(),
            content: PanelContent::Scatter {
                series: stats[1..]
                    .iter()
                    .map(|(name, s)| ScatterSeries {
                        label: (*name).to_owned(),
                        x: m.input.std.clone(),
                        y: s.std.clone(),
                    })
                    .collect(),
                lines: vec![],
                x_scale: Scale::Log,
                y_scale: Scale::Log,
            },
        });
        panels.push(Panel {
            title: "Input Features: Mean |x| (Outliers Stand Out)".to_owned(),
            x_label: "feature index".to_owned(),
            y_label: "mean |x| over batch and positions".to_owned(),
            content: PanelContent::Lines {
                series: vec![line("input", &feat, &m.feature_mean_abs_input, LineStyle::Solid)],
                x_scale: Scale::Linear,
                y_scale: Scale::Log,
            },
        });
        panels.push(Panel {
            title: "Output Features: Mean |y| (Per-Position Norms Keep Outliers)".to_owned(),
            x_label: "feature index".to_owned(),
            y_label: "mean |y| over batch and positions".to_owned(),
            content: PanelContent::Lines {
                series: vec![
                    line("LayerNorm", &feat, &f.layer_norm, LineStyle::Solid),
                    line("RMSNorm", &feat, &f.rms_norm, LineStyle::Solid),
                    line("BatchNorm", &feat, &f.batch_norm, LineStyle::Solid),
                ],
                x_scale: Scale::Linear,
                y_scale: Scale::Log,
            },
        });
        Figure {
            title: "3D Sequence Normalization (Transformer-like)".to_owned(),
            panels,
            columns: 4,
        }
    }
}

/// What is shared by every sequence: position scales and outlier features.
struct Layout {
    position_scale: Vec<f64>,
    outlier: Vec<f64>,
}

/// Draws one sequence (L × D, row-major) under `layout`.
fn draw_sequence(rng: &mut rand_chacha::ChaCha8Rng, cfg: &Config, layout: &Layout) -> Vec<f64> {
    let mut x = Vec::with_capacity(cfg.seq_len * cfg.dim);
    for &p in &layout.position_scale {
        let scale = p * (uniform(rng, (0.8f64.ln(), 1.25f64.ln()))).exp();
        let offset = cfg.offset_std * normal(rng);
        for &o in &layout.outlier {
            x.push(scale * (normal(rng) + offset + o));
        }
    }
    x
}

/// BatchNorm with training-mode statistics: for each feature, the mean and (biased,
/// two-pass) variance over all (batch, position) pairs.
///
/// ```text
/// μ_d = mean_{b,l} x[b,l,d];  v_d = mean_{b,l} (x[b,l,d] − μ_d)²
/// y[b,l,d] = (x[b,l,d] − μ_d) / √(v_d + eps)
/// ```
fn batch_norm_train(x: &ArrayView3<'_, f64>, eps: f64) -> Array3<f64> {
    let n = (x.len_of(Axis(0)) * x.len_of(Axis(1))).max(1) as f64;
    let mu = x.sum_axis(Axis(0)).sum_axis(Axis(0)) / n;
    let centered = x - &mu;
    let var = (&centered * &centered).sum_axis(Axis(0)).sum_axis(Axis(0)) / n;
    let inv = var.mapv(|v| 1.0 / (v + eps).sqrt());
    centered * &inv
}

/// Per-(batch, position) mean and std of a (B, L, D) array, as two B × L matrices.
fn position_stats(a: &Array3<f64>) -> PositionStats {
    let d = a.len_of(Axis(2));
    let flat: Vec<f64> = a.iter().copied().collect();
    let st = row_stats(&flat, d);
    PositionStats {
        mean: st.iter().map(|s| s.mean).collect(),
        std: st.iter().map(|s| s.std()).collect(),
    }
}

/// A B × L heatmap panel drawn on the colour scale `range`.
fn heatmap(title: &str, rows: usize, cols: usize, values: Vec<f64>, bar: &str, range: (f64, f64)) -> Panel {
    Panel {
        title: title.to_owned(),
        x_label: "position".to_owned(),
        y_label: "sequence".to_owned(),
        content: PanelContent::Heatmap(Heatmap {
            rows,
            cols,
            values,
            colorbar_label: bar.to_owned(),
            range: Some(range),
        }),
    }
}

/// Mean of `profile` over the `outliers` features divided by its median over all
/// features (NaN without outlier features).
fn outlier_ratio(profile: &[f64], outliers: &[usize]) -> f64 {
    if outliers.is_empty() || profile.is_empty() {
        return f64::NAN;
    }
    let mut sorted = profile.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    outliers.iter().map(|&k| profile[k]).sum::<f64>() / outliers.len() as f64 / median
}

/// Largest |a − b| over two equally shaped arrays (exact: 0 only if equal bit for bit,
/// up to signed zeros).
fn max_diff(a: &ArrayView3<'_, f64>, b: &ArrayView3<'_, f64>) -> f64 {
    max_abs(a.iter().zip(b.iter()).map(|(p, q)| p - q))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_determinism, check_invalid, check_shape};

    /// Asserts every claim for one config and seed: exact batch independence for the
    /// per-position norms, the closed forms var/(var+eps) and mean² + std² = ms/(ms+eps)
    /// at every position, BatchNorm's dependence on the batch, and the shared colour
    /// scale of each heatmap row.
    fn check(cfg: &Config, seed: u64) {
        let r = Sequence3d::run(cfg, seed).expect("runs");
        check_shape(&r, ID);
        let m = Sequence3d::measure(cfg, seed).expect("measures");
        assert_eq!(m.alone_vs_batch.layer_norm, 0.0);
        assert_eq!(m.alone_vs_batch.rms_norm, 0.0);
        assert_eq!(m.batch_change.layer_norm, 0.0);
        assert_eq!(m.batch_change.rms_norm, 0.0);
        // BatchNorm on one sequence uses that sequence's statistics, not the batch's.
        assert!(m.alone_vs_batch.batch_norm > 1e-3);
        // Redrawing 3 of 4 sequences moves each feature's batch mean by O(σ/√(B·L)):
        // far above rounding.
        assert!(m.batch_change.batch_norm > 1e-3);
        assert!(m.batch_norm_mean_change > 0.0 && m.batch_norm_mean_change <= m.batch_change.batch_norm);
        // Positions span a 16× scale range; BatchNorm keeps them unequal.
        let (lo, hi) = min_max(m.batch_norm.std.iter().copied());
        assert!(hi / lo > 2.0, "{}", hi / lo);

        let tol = cfg.dim as f64 * f64::EPSILON * 100.0;
        for i in 0..m.input.mean.len() {
            let (mu, sd) = (m.input.mean[i], m.input.std[i]);
            let v = sd * sd;
            let ms = mu * mu + v;
            assert!(m.layer_norm.mean[i].abs() < tol);
            assert!((m.layer_norm.std[i] - (v / (v + cfg.ln_eps)).sqrt()).abs() < tol);
            let (rm, rs) = (m.rms_norm.mean[i], m.rms_norm.std[i]);
            assert!((rm * rm + rs * rs - ms / (ms + cfg.rms_eps)).abs() < tol);
            // RMSNorm keeps the mean: mean_out = mean_in / √(ms + eps).
            assert!((rm - mu / (ms + cfg.rms_eps).sqrt()).abs() < tol);
        }
        // BatchNorm gives each feature mean 0 and variance v/(v+eps) ≤ 1 over (B, L):
        // mean |y| ≤ 1 per feature, while per-position norms keep the outliers large.
        assert!(m.feature_mean_abs.batch_norm.iter().all(|&v| v <= 1.0 + 1e-12));
        for &k in &m.outlier_features {
            assert!(m.feature_mean_abs.layer_norm[k] > 2.0, "feature {k}");
        }
        // Heatmaps: the four panels of each row share one colour scale that covers
        // every value of the row.
        let heat: Vec<&Heatmap> = r
            .figure
            .panels
            .iter()
            .filter_map(|p| match &p.content {
                PanelContent::Heatmap(h) => Some(h),
                _ => None,
            })
            .collect();
        assert_eq!(heat.len(), 8);
        for row in heat.chunks(4) {
            let range = row[0].range.expect("explicit range");
            for h in row {
                assert_eq!(h.range, Some(range));
                assert!(h.values.iter().all(|v| (range.0..=range.1).contains(v)));
            }
        }
        assert_eq!(r.figure.panels.len() % r.figure.columns, 0, "no empty panel slot");
    }

    #[test]
    fn claims_hold_on_small_configs() {
        for seed in [42, 7, 2026] {
            check(&Config::small(), seed);
        }
    }

    #[test]
    fn outlier_ratio_is_mean_over_median() {
        assert_eq!(outlier_ratio(&[1.0, 2.0, 10.0], &[2]), 5.0);
        assert_eq!(outlier_ratio(&[1.0, 3.0, 5.0, 20.0], &[3]), 5.0);
        assert_eq!(outlier_ratio(&[1.0, 2.0, 3.0, 10.0, 20.0], &[3, 4]), 5.0);
        assert!(outlier_ratio(&[1.0, 2.0], &[]).is_nan());
    }

    #[test]
    fn batch_norm_normalizes_each_feature_over_batch_and_positions() {
        let x = Array3::from_shape_fn((3, 5, 4), |(b, l, d)| {
            ((b * 31 + l * 7 + d * 3) % 11) as f64 * (d + 1) as f64 + d as f64
        });
        let y = batch_norm_train(&x.view(), 0.0);
        for d in 0..4 {
            let col: Vec<f64> = y.slice(s![.., .., d]).iter().copied().collect();
            assert!(mean(&col).abs() < 1e-14);
            assert!((crate::stats::variance(&col) - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn deterministic_per_seed() {
        check_determinism(|s| Sequence3d::run(&Config::small(), s));
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let c = Config::small;
        let run = |cfg: Config| Sequence3d::run(&cfg, 1);
        check_invalid(run(Config { batch: 1, ..c() }), "batch");
        check_invalid(run(Config { seq_len: 0, ..c() }), "seq_len");
        check_invalid(run(Config { dim: 0, ..c() }), "dim");
        check_invalid(
            run(Config {
                outlier_features: 40,
                ..c()
            }),
            "outlier_features",
        );
        check_invalid(
            run(Config {
                position_scale_range: (0.0, 4.0),
                ..c()
            }),
            "position_scale_range",
        );
        check_invalid(run(Config { ln_eps: -1.0, ..c() }), "ln_eps");
        check_invalid(
            run(Config {
                rms_eps: f64::NAN,
                ..c()
            }),
            "rms_eps",
        );
        check_invalid(run(Config { bn_eps: -1.0, ..c() }), "bn_eps");
        check_invalid(
            run(Config {
                offset_std: -0.1,
                ..c()
            }),
            "offset_std",
        );
        check_invalid(
            run(Config {
                outlier_size: f64::INFINITY,
                ..c()
            }),
            "outlier_size",
        );
    }
}
