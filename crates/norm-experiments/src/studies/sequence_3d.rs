//! Study 8 — (B, L, D) sequences like transformer activations: positions with very
//! different scales and offsets, plus a few large outlier features. LayerNorm and RMSNorm
//! normalize each (batch, position) vector on its own, so the heatmaps of per-position
//! statistics go flat after them, and a sequence normalized alone equals its slice of the
//! batched result bit for bit: the same computation at training (batched) and inference
//! (one sequence). BatchNorm, implemented here with training-mode statistics over
//! (batch, position) per feature, is the contrast: its output for a sequence changes when
//! the other sequences of the batch change, and it leaves per-position scales unequal.

use ndarray::{Array3, ArrayView3, Axis, s};
use norm_core::{LayerNorm, RmsNorm};

use crate::common::{
    finding, normal, require_at_least, require_non_negative, require_range, summary_finding,
    uniform,
};
use crate::format::{g, sig};
use crate::study::{Study, StudyConfig};
use crate::result::{Figure, Heatmap, LineSeries, LineStyle, Panel, PanelContent, Scale};
use crate::stats::{max_abs, mean, min_max, row_stats};
use crate::{StudyError, StudyResult, study_rng};

/// Stable id.
pub const ID: &str = "sequence-3d";
/// Title.
pub const TITLE: &str = "3D Sequences";
/// The seed document's summary line.
pub const SUMMARY: &str = "Both norms handle (B, L, D) naturally, normalizing per-position.";

/// Configuration of the 3D-sequence study.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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

impl Config {
    /// A small config for tests: B = 4, L = 16, D = 32.
    pub fn small() -> Self {
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
    pub fn validate(&self) -> Result<(), StudyError> {
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

impl StudyConfig for Config {
    fn small() -> Self {
        Config::small()
    }

    fn validate(&self) -> Result<(), StudyError> {
        Config::validate(self)
    }
}

/// The study (registry type).
pub struct Sequence3d;

/// Transitional: the whole result is the measurement until this study is split into
/// measure → findings → figure.
impl Study for Sequence3d {
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

/// Per-(batch, position) mean and std of a (B, L, D) array, as two B × L heatmaps.
fn position_stats(a: &Array3<f64>) -> (Vec<f64>, Vec<f64>) {
    let d = a.len_of(Axis(2));
    let flat: Vec<f64> = a.iter().copied().collect();
    let st = row_stats(&flat, d);
    (
        st.iter().map(|s| s.mean).collect(),
        st.iter().map(|s| s.std()).collect(),
    )
}

fn heatmap(title: &str, rows: usize, cols: usize, values: Vec<f64>, bar: &str) -> Panel {
    Panel {
        title: title.to_owned(),
        x_label: "position".to_owned(),
        y_label: "sequence".to_owned(),
        content: PanelContent::Heatmap(Heatmap {
            rows,
            cols,
            values,
            colorbar_label: bar.to_owned(),
        }),
    }
}

/// Largest |a − b| over two equally shaped arrays (exact: 0 only if equal bit for bit,
/// up to signed zeros).
fn max_diff(a: &ArrayView3<'_, f64>, b: &ArrayView3<'_, f64>) -> f64 {
    max_abs(a.iter().zip(b.iter()).map(|(p, q)| p - q))
}

/// Runs the study.
///
/// ```text
/// x[b,l,:] = s_bl · (z + m_bl + o),   z ~ N(0, I),  o = ±outlier on a few features
/// LN / RMS: statistics over D for each (b, l);   BatchNorm: over (B, L) for each d
/// ```
///
/// # Errors
/// [`StudyError::InvalidConfig`] from [`Config::validate`].
///
/// # Example
/// ```
/// use norm_experiments::studies::sequence_3d::{run, Config};
/// let r = run(&Config::small(), 42)?;
/// let f = r.findings.iter().find(|f| f.summary).unwrap();
/// assert_eq!(f.value, 0.0);
/// # Ok::<(), norm_experiments::StudyError>(())
/// ```
pub fn run(cfg: &Config, seed: u64) -> Result<StudyResult, StudyError> {
    cfg.validate()?;
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

    // Per-position statistics.
    let (in_mean, in_std) = position_stats(&x);
    let (ln_mean, ln_std) = position_stats(&y_ln);
    let (rms_mean, rms_std) = position_stats(&y_rms);
    let (bn_mean, bn_std) = position_stats(&y_bn);
    let rms_rms: Vec<f64> = rms_mean
        .iter()
        .zip(&rms_std)
        .map(|(m, s)| (m * m + s * s).sqrt())
        .collect();

    // Each sequence alone vs its slice of the batch.
    let (mut alone_ln, mut alone_rms) = (0.0f64, 0.0f64);
    for i in 0..b {
        let xi = x.slice(s![i..i + 1, .., ..]);
        alone_ln = alone_ln.max(max_diff(
            &ln.forward(&xi)?.view(),
            &y_ln.slice(s![i..i + 1, .., ..]),
        ));
        alone_rms = alone_rms.max(max_diff(
            &rms.forward(&xi)?.view(),
            &y_rms.slice(s![i..i + 1, .., ..]),
        ));
    }

    // Same sequence 0, every other sequence redrawn.
    let mut other = data[..l * d].to_vec();
    for _ in 1..b {
        other.extend(draw_sequence(&mut rng, cfg, &layout));
    }
    let x2 = Array3::from_shape_fn((b, l, d), |(i, j, k)| other[(i * l + j) * d + k]);
    let first = s![0..1, .., ..];
    let ln_change = max_diff(&ln.forward(&x2)?.slice(first), &y_ln.slice(first));
    let rms_change = max_diff(&rms.forward(&x2)?.slice(first), &y_rms.slice(first));
    let y_bn2 = batch_norm_train(&x2.view(), cfg.bn_eps);
    let bn_delta = &y_bn2.slice(first) - &y_bn.slice(first);
    let bn_change = max_abs(bn_delta.iter().copied());
    let bn_mean_change = mean(&bn_delta.iter().map(|v| v.abs()).collect::<Vec<_>>());
    let per_pos = |a: &Array3<f64>, c: &Array3<f64>| -> Vec<f64> {
        (0..l)
            .map(|j| {
                max_abs(
                    a.slice(s![0, j, ..])
                        .iter()
                        .zip(c.slice(s![0, j, ..]).iter())
                        .map(|(p, q)| p - q),
                )
            })
            .collect()
    };
    let ln_change_pos = per_pos(&ln.forward(&x2)?, &y_ln);
    let rms_change_pos = per_pos(&rms.forward(&x2)?, &y_rms);
    let bn_change_pos = per_pos(&y_bn2, &y_bn);

    let (is_lo, is_hi) = min_max(in_std.iter().copied());
    let (im_lo, im_hi) = min_max(in_mean.iter().copied());
    let ln_mean_max = max_abs(ln_mean.iter().copied());
    let (ls_lo, ls_hi) = min_max(ln_std.iter().copied());
    let rms_dev = max_abs(rms_rms.iter().map(|r| r - 1.0));
    let (rm_lo, rm_hi) = min_max(rms_mean.iter().copied());
    let (rs_lo, rs_hi) = min_max(rms_std.iter().copied());
    let (bs_lo, bs_hi) = min_max(bn_std.iter().copied());
    let positions = b * l;
    let alone = alone_ln.max(alone_rms);

    let findings = vec![
        summary_finding(
            "alone_vs_batch_max_diff",
            alone,
            "",
            format!(
                "Both norms normalize each of the {positions} (batch, position) vectors on its own: \
                 every sequence normalized alone equals its slice of the batched ({b}, {l}, {d}) \
                 result exactly (max difference {} for LayerNorm, {} for RMSNorm), so training \
                 (batched) and inference (one sequence) compute the same thing.",
                g(alone_ln),
                g(alone_rms)
            ),
        ),
        finding(
            "ln_max_abs_position_mean",
            ln_mean_max,
            "",
            format!(
                "After LayerNorm every position has |mean| ≤ {} and std in [{}, {}], although \
                 input per-position means span [{}, {}] and stds [{}, {}] (outlier features included).",
                g(ln_mean_max),
                sig(ls_lo, 7),
                sig(ls_hi, 7),
                g(im_lo),
                g(im_hi),
                g(is_lo),
                g(is_hi)
            ),
        ),
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
        ),
        finding(
            "norm_change_when_batch_changes",
            ln_change.max(rms_change),
            "",
            format!(
                "When the other {} sequences are redrawn, sequence 0's LayerNorm output changes by \
                 {} and its RMSNorm output by {}.",
                b - 1,
                g(ln_change),
                g(rms_change)
            ),
        ),
        finding(
            "batchnorm_change_when_batch_changes",
            bn_change,
            "",
            format!(
                "BatchNorm with training-mode statistics (per feature, over batch and positions) \
                 changes sequence 0's output by up to {} (mean |change| {}) when the other {} \
                 sequences are redrawn: its output depends on the batch.",
                sig(bn_change, 3),
                sig(bn_mean_change, 3),
                b - 1
            ),
        ),
        finding(
            "batchnorm_position_std_spread",
            bs_hi / bs_lo,
            "max/min",
            format!(
                "BatchNorm does not equalize positions: after it, per-position stds still span \
                 [{}, {}], a factor {}.",
                sig(bs_lo, 3),
                sig(bs_hi, 3),
                sig(bs_hi / bs_lo, 3)
            ),
        ),
    ];

    let pos: Vec<f64> = (0..l).map(|j| j as f64).collect();
    let change_line = |label: &str, y: Vec<f64>| LineSeries {
        label: label.to_owned(),
        x: pos.clone(),
        y,
        style: LineStyle::Markers,
    };
    let feature_profile: Vec<f64> = (0..d)
        .map(|k| mean(&x.slice(s![.., .., k]).iter().map(|v| v.abs()).collect::<Vec<_>>()))
        .collect();
    let panels = vec![
        heatmap("Input: Per-Position Mean", b, l, in_mean, "mean over features"),
        heatmap(
            "LayerNorm: Per-Position Mean",
            b,
            l,
            ln_mean,
            "mean over features",
        ),
        heatmap("RMSNorm: Per-Position Mean", b, l, rms_mean, "mean over features"),
        heatmap(
            "BatchNorm: Per-Position Mean",
            b,
            l,
            bn_mean,
            "mean over features",
        ),
        heatmap("Input: Per-Position Std", b, l, in_std, "std over features"),
        heatmap("LayerNorm: Per-Position Std", b, l, ln_std, "std over features"),
        heatmap("RMSNorm: Per-Position Std", b, l, rms_std, "std over features"),
        heatmap("BatchNorm: Per-Position Std", b, l, bn_std, "std over features"),
        Panel {
            title: "Sequence 0's Output When the Rest of the Batch Changes".to_owned(),
            x_label: "position".to_owned(),
            y_label: "max |change| over features".to_owned(),
            content: PanelContent::Lines {
                series: vec![
                    change_line("LayerNorm", ln_change_pos),
                    change_line("RMSNorm", rms_change_pos),
                    change_line("BatchNorm (training mode)", bn_change_pos),
                ],
                x_scale: Scale::Linear,
                y_scale: Scale::Linear,
            },
        },
        Panel {
            title: "Input Features: Mean |x| (Outliers Stand Out)".to_owned(),
            x_label: "feature index".to_owned(),
            y_label: "mean |x| over batch and positions".to_owned(),
            content: PanelContent::Lines {
                series: vec![LineSeries {
                    label: "input".to_owned(),
                    x: (0..d).map(|k| k as f64).collect(),
                    y: feature_profile,
                    style: LineStyle::Solid,
                }],
                x_scale: Scale::Linear,
                y_scale: Scale::Log,
            },
        },
    ];

    Ok(StudyResult {
        id: ID.to_owned(),
        title: TITLE.to_owned(),
        explanation: vec![
            format!(
                "A batch of {b} sequences of {l} positions with {d} features, built like transformer \
                 activations: each position has its own scale (log-uniform in [{}, {}]) and mean \
                 offset, and {} features carry a large offset of ±{} (outlier features). Heatmaps \
                 show the mean and standard deviation over the features at every (sequence, position).",
                cfg.position_scale_range.0,
                cfg.position_scale_range.1,
                cfg.outlier_features,
                cfg.outlier_size
            ),
            "LayerNorm and RMSNorm take their statistics over the feature axis of each position, \
             so the (B, L, D) array is just B·L independent rows: LayerNorm's heatmaps go flat at \
             mean 0 and std 1; RMSNorm's RMS is 1 everywhere but each position keeps its own mean \
             (pushed away from 0 by the outlier features). No statistic crosses positions or \
             sequences, so a sequence normalized alone is bit for bit its slice of the batch."
                .to_owned(),
            "BatchNorm, the contrast, takes each feature's statistics over the batch and the \
             positions. Its output for a sequence depends on which other sequences share the \
             batch, and it leaves positions of different scale unequal: the reason transformers \
             use per-position norms."
                .to_owned(),
        ],
        figure: Figure {
            title: "3D Sequence Normalization (Transformer-like)".to_owned(),
            panels,
            columns: 4,
        },
        config: toml::Table::new(),
        findings,
        timings: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_determinism, check_invalid, check_shape, value};

    fn heat(r: &StudyResult, i: usize) -> &[f64] {
        match &r.figure.panels[i].content {
            PanelContent::Heatmap(h) => &h.values,
            _ => panic!("panel {i} is a heatmap"),
        }
    }

    /// Asserts every claim for one config and seed: exact batch independence for the
    /// per-position norms, the closed forms var/(var+eps) and mean² + std² = ms/(ms+eps)
    /// at every position, and BatchNorm's dependence on the batch.
    fn check(cfg: &Config, seed: u64) {
        let r = run(cfg, seed).expect("runs");
        check_shape(&r, ID);
        assert_eq!(value(&r, "alone_vs_batch_max_diff"), 0.0);
        assert_eq!(value(&r, "norm_change_when_batch_changes"), 0.0);
        // Redrawing 3 of 4 sequences moves each feature's batch mean by O(σ/√(B·L)):
        // far above rounding.
        assert!(value(&r, "batchnorm_change_when_batch_changes") > 1e-3);
        // Positions span a 16× scale range; BatchNorm keeps them unequal.
        assert!(value(&r, "batchnorm_position_std_spread") > 2.0);

        let tol = cfg.dim as f64 * f64::EPSILON * 100.0;
        let (in_mean, in_std) = (heat(&r, 0), heat(&r, 4));
        let (ln_mean, ln_std) = (heat(&r, 1), heat(&r, 5));
        let (rms_mean, rms_std) = (heat(&r, 2), heat(&r, 6));
        for i in 0..in_mean.len() {
            let v = in_std[i] * in_std[i];
            let ms = in_mean[i] * in_mean[i] + v;
            assert!(ln_mean[i].abs() < tol);
            assert!((ln_std[i] - (v / (v + cfg.ln_eps)).sqrt()).abs() < tol);
            let rms2 = rms_mean[i] * rms_mean[i] + rms_std[i] * rms_std[i];
            assert!((rms2 - ms / (ms + cfg.rms_eps)).abs() < tol);
            // RMSNorm keeps the mean: mean_out = mean_in / √(ms + eps).
            assert!((rms_mean[i] - in_mean[i] / (ms + cfg.rms_eps).sqrt()).abs() < tol);
        }
    }

    #[test]
    fn claims_hold_on_small_configs() {
        for seed in [42, 7, 2026] {
            check(&Config::small(), seed);
        }
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
        check_determinism(|s| run(&Config::small(), s));
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let c = Config::small;
        check_invalid(run(&Config { batch: 1, ..c() }, 1), "batch");
        check_invalid(run(&Config { seq_len: 0, ..c() }, 1), "seq_len");
        check_invalid(run(&Config { dim: 0, ..c() }, 1), "dim");
        check_invalid(
            run(
                &Config {
                    outlier_features: 40,
                    ..c()
                },
                1,
            ),
            "outlier_features",
        );
        check_invalid(
            run(
                &Config {
                    position_scale_range: (0.0, 4.0),
                    ..c()
                },
                1,
            ),
            "position_scale_range",
        );
        check_invalid(run(&Config { ln_eps: -1.0, ..c() }, 1), "ln_eps");
        check_invalid(
            run(
                &Config {
                    rms_eps: f64::NAN,
                    ..c()
                },
                1,
            ),
            "rms_eps",
        );
        check_invalid(run(&Config { bn_eps: -1.0, ..c() }, 1), "bn_eps");
        check_invalid(
            run(
                &Config {
                    offset_std: -0.1,
                    ..c()
                },
                1,
            ),
            "offset_std",
        );
    }
}
