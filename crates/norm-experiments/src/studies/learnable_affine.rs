//! Study 5 — learnable gamma/beta: LayerNorm removes each sample's mean and spread; its
//! affine parameters can put a mean and a spread back. A batch drawn from N(μ, σ²) is
//! normalized, then restored (a) exactly with each sample's own statistics and (b) with
//! the per-feature parameters a layer really has, γ = σ, β = μ, which restore the
//! distribution but not each value (the per-sample deviations LayerNorm discarded stay
//! lost: an RMS error of about σ·√(1.5/d)). Finally γ and β are *learned* from 1 and 0 by
//! gradient descent through `norm-autograd`'s LayerNorm backward; the loss is quadratic
//! in (γ_j, β_j), so the exact gradient-descent trajectory is known in closed form and
//! the learned values are checked against it, against the least-squares optimum, and
//! against σ and μ.

use ndarray::Array2;
use norm_autograd::{Gradients, Norm, mse_loss, sgd_step};
use norm_core::LayerNorm;

use crate::common::{
    finding, normal, require_at_least, require_finite, require_non_negative, require_positive,
    summary_finding,
};
use crate::format::{g, sig};
use crate::study::{Study, StudyConfig};
use crate::result::{Figure, LineSeries, LineStyle, Panel, PanelContent, Scale, ScatterSeries};
use crate::stats::{histogram, mean, min_max, segment, std_dev};
use crate::{StudyError, StudyResult, study_rng};

/// Stable id.
pub const ID: &str = "learnable-affine";
/// Title.
pub const TITLE: &str = "Learnable Parameters";
/// The seed document's summary line.
pub const SUMMARY: &str = "gamma/beta can recover original distribution if the network learns to.";

/// Configuration of the learnable-affine study.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Number of samples (rows).
    pub samples: usize,
    /// Features per sample (the normalized axis; one γ_j and β_j each).
    pub dim: usize,
    /// μ: the mean of the original distribution.
    pub mean: f64,
    /// σ: the standard deviation of the original distribution (> 0).
    pub std: f64,
    /// LayerNorm eps.
    pub eps: f64,
    /// Learning rate of plain gradient descent on the per-sample squared error.
    pub lr: f64,
    /// Number of gradient-descent steps.
    pub steps: usize,
    /// Histogram bins.
    pub bins: usize,
}

impl Default for Config {
    /// The full-size study: 128 samples × 256 features from N(2, 3²), 150 steps at lr 0.04.
    fn default() -> Self {
        Self {
            samples: 128,
            dim: 256,
            mean: 2.0,
            std: 3.0,
            eps: 1e-5,
            lr: 0.04,
            steps: 150,
            bins: 60,
        }
    }
}

impl Config {
    /// A small config for tests: 64 × 64, 200 steps at lr 0.04.
    pub fn small() -> Self {
        Self {
            samples: 64,
            dim: 64,
            lr: 0.04,
            steps: 200,
            bins: 30,
            ..Self::default()
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`StudyError::InvalidConfig`] for fewer than 2 samples or features, `steps` or
    /// `bins` 0, a non-finite mean, a std, lr not finite and > 0, a negative or
    /// non-finite eps, or an lr at which gradient descent on this loss cannot converge
    /// (`lr ≥ 0.5`: the loss curvature is about 2 per parameter, see [`run`]).
    pub fn validate(&self) -> Result<(), StudyError> {
        require_at_least(
            ID,
            "samples",
            self.samples,
            2,
            "a per-feature fit needs at least 2 samples",
        )?;
        require_at_least(ID, "dim", self.dim, 2, "a variance needs at least 2 features")?;
        require_at_least(ID, "steps", self.steps, 1, "need at least one step")?;
        require_at_least(ID, "bins", self.bins, 1, "need at least one histogram bin")?;
        require_finite(ID, "mean", self.mean)?;
        require_positive(ID, "std", self.std)?;
        require_non_negative(ID, "eps", self.eps)?;
        require_positive(ID, "lr", self.lr)?;
        if self.lr >= 0.5 {
            return Err(StudyError::InvalidConfig {
                study: ID,
                field: "lr",
                value: self.lr.to_string(),
                reason: "must be < 0.5 (the loss curvature is about 2, so larger steps diverge)",
            });
        }
        Ok(())
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
pub struct LearnableAffine;

/// Transitional: the whole result is the measurement until this study is split into
/// measure → findings → figure.
impl Study for LearnableAffine {
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

/// The closed-form quantities of the quadratic loss for one feature `j`:
///
/// ```text
/// L_j(γ, β) = (1/n) Σ_i (γ·x̂_ij + β − x_ij)²
/// H_j = (2/n)·[[Σ x̂², Σ x̂], [Σ x̂, n]],   θ*_j = H_j⁻¹·(2/n)·[Σ x̂·x, Σ x]
/// θ_T = θ* + (I − lr·H)^T·(θ_0 − θ*)      (gradient descent, exactly)
/// ```
#[derive(Debug, Clone, Copy)]
struct FeatureFit {
    /// Least-squares optimum (γ*, β*).
    opt: [f64; 2],
    /// (γ, β) after T gradient-descent steps from (1, 0), by the matrix power.
    traj: [f64; 2],
    /// Smallest and largest Hessian eigenvalue.
    eig: (f64, f64),
    /// Loss of this feature at the optimum (summed over samples, divided by n).
    loss_opt: f64,
}

/// Solves the 2×2 least-squares problem of one feature and runs the closed-form
/// trajectory. `xh` and `x` are the feature's column over the samples.
fn fit_feature(xh: &[f64], x: &[f64], lr: f64, steps: usize) -> FeatureFit {
    let n = xh.len() as f64;
    let s_hh: f64 = xh.iter().map(|v| v * v).sum();
    let s_h: f64 = xh.iter().sum();
    let s_hx: f64 = xh.iter().zip(x).map(|(a, b)| a * b).sum();
    let s_x: f64 = x.iter().sum();
    let h = [[2.0 * s_hh / n, 2.0 * s_h / n], [2.0 * s_h / n, 2.0]];
    let c = [2.0 * s_hx / n, 2.0 * s_x / n];
    let det = h[0][0] * h[1][1] - h[0][1] * h[1][0];
    let opt = [
        (h[1][1] * c[0] - h[0][1] * c[1]) / det,
        (h[0][0] * c[1] - h[1][0] * c[0]) / det,
    ];
    // Gradient descent on a quadratic: e_{t+1} = (I − lr·H)·e_t, e = θ − θ*.
    let m = [
        [1.0 - lr * h[0][0], -lr * h[0][1]],
        [-lr * h[1][0], 1.0 - lr * h[1][1]],
    ];
    let mut e = [1.0 - opt[0], -opt[1]];
    for _ in 0..steps {
        e = [m[0][0] * e[0] + m[0][1] * e[1], m[1][0] * e[0] + m[1][1] * e[1]];
    }
    let tr = h[0][0] + h[1][1];
    let disc = ((h[0][0] - h[1][1]).powi(2) + 4.0 * h[0][1] * h[1][0]).sqrt();
    let loss_opt = xh
        .iter()
        .zip(x)
        .map(|(a, b)| (opt[0] * a + opt[1] - b).powi(2))
        .sum::<f64>()
        / n;
    FeatureFit {
        opt,
        traj: [opt[0] + e[0], opt[1] + e[1]],
        eig: ((tr - disc) / 2.0, (tr + disc) / 2.0),
        loss_opt,
    }
}

/// Runs the study: draws `samples × dim` values from N(μ, σ²), normalizes them with a
/// `norm_autograd::Norm` LayerNorm (γ = 1, β = 0), restores them, then learns γ and β.
///
/// The training loss is the per-sample squared error against the original input, its
/// gradient goes through `norm_autograd`'s LayerNorm backward (dγ, dβ), and
/// `sgd_step` updates the layer:
///
/// ```text
/// L(γ, β) = (1/n) Σ_i ‖γ ⊙ x̂_i + β − x_i‖²,   x̂_i = (x_i − mean_i)/√(var_i + eps)
/// ```
///
/// # Errors
/// [`StudyError::InvalidConfig`] from [`Config::validate`]; [`StudyError::Grad`] if a
/// layer call refuses its input (it cannot for a valid config).
///
/// # Example
/// ```
/// use norm_experiments::studies::learnable_affine::{run, Config};
/// let r = run(&Config::small(), 42)?;
/// assert!(r.findings.iter().any(|f| f.summary));
/// # Ok::<(), norm_experiments::StudyError>(())
/// ```
pub fn run(cfg: &Config, seed: u64) -> Result<StudyResult, StudyError> {
    cfg.validate()?;
    let (n, d) = (cfg.samples, cfg.dim);
    let (mu, sigma) = (cfg.mean, cfg.std);
    let mut rng = study_rng(seed, ID);
    let x = Array2::from_shape_simple_fn((n, d), || mu + sigma * normal(&mut rng));

    let mut layer = Norm::Layer(LayerNorm::<f64>::new(d)?.with_zero_bias().with_eps(cfg.eps)?);
    let (xh, _) = layer.forward(&x)?;

    // (a) Exact inverse with each sample's own statistics: x = √(var_i+eps)·x̂ + mean_i.
    let mut inv_err = 0.0f64;
    for (xr, hr) in x.rows().into_iter().zip(xh.rows()) {
        let xr = xr.to_vec();
        let (m_i, s_i) = (mean(&xr), (std_dev(&xr).powi(2) + cfg.eps).sqrt());
        for (a, b) in xr.iter().zip(hr) {
            inv_err = inv_err.max((s_i * b + m_i - a).abs() / sigma);
        }
    }
    // (b) The layer's per-feature parameters at γ = σ, β = μ.
    let restored = xh.mapv(|v| sigma * v + mu);
    let x_flat: Vec<f64> = x.iter().copied().collect();
    let xh_flat: Vec<f64> = xh.iter().copied().collect();
    let r_flat: Vec<f64> = restored.iter().copied().collect();
    let pop_rms = (x_flat
        .iter()
        .zip(&r_flat)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        / x_flat.len() as f64)
        .sqrt()
        / sigma;
    // Per sample: x − (σx̂ + μ) = (s_i − σ)·x̂ + (m_i − μ), and Σ_j x̂_ij = 0, so the mean
    // square error is E[(s−σ)²] + E[(m−μ)²] ≈ σ²/(2d) + σ²/d.
    let pop_rms_pred = (1.5 / d as f64).sqrt();
    let (x_mean, x_std) = (mean(&x_flat), std_dev(&x_flat));
    let (r_mean, r_std) = (mean(&r_flat), std_dev(&r_flat));
    let moment_gap = ((r_mean - x_mean).abs() / sigma).max((r_std - x_std).abs() / sigma);

    // Closed forms per feature.
    let fits: Vec<FeatureFit> = (0..d)
        .map(|j| {
            let hcol: Vec<f64> = xh.column(j).to_vec();
            let xcol: Vec<f64> = x.column(j).to_vec();
            fit_feature(&hcol, &xcol, cfg.lr, cfg.steps)
        })
        .collect();
    let loss_opt: f64 = fits.iter().map(|f| f.loss_opt).sum();
    let (eig_lo, _) = min_max(fits.iter().map(|f| f.eig.0));
    let (_, eig_hi) = min_max(fits.iter().map(|f| f.eig.1));
    let rho = (1.0 - cfg.lr * eig_lo).abs().max((1.0 - cfg.lr * eig_hi).abs());
    let start_dist = fits
        .iter()
        .map(|f| ((1.0 - f.opt[0]).powi(2) + f.opt[1].powi(2)).sqrt())
        .fold(0.0, f64::max);

    // (c) Learn γ and β by gradient descent through the manual backward pass.
    let mut losses = Vec::with_capacity(cfg.steps + 1);
    let mut gamma_mean = Vec::with_capacity(cfg.steps + 1);
    let mut beta_mean = Vec::with_capacity(cfg.steps + 1);
    let record = |layer: &Norm<f64>, gm: &mut Vec<f64>, bm: &mut Vec<f64>| {
        gm.push(mean(layer.weight()));
        bm.push(layer.bias().map_or(0.0, mean));
    };
    for _ in 0..cfg.steps {
        record(&layer, &mut gamma_mean, &mut beta_mean);
        let (y, cache) = layer.forward(&x)?;
        // mse_loss averages over all n·d entries; the per-sample loss is d times that.
        let (l, mut dy) = mse_loss(&y, &x)?;
        losses.push(l * d as f64);
        dy *= d as f64;
        let (_, grads) = layer.backward(&cache, &dy)?;
        sgd_step(&mut layer, &grads, cfg.lr)?;
        debug_assert_eq!(grads.grad_norms().len(), 2);
    }
    record(&layer, &mut gamma_mean, &mut beta_mean);
    let (y, _) = layer.forward(&x)?;
    losses.push(mse_loss(&y, &x)?.0 * d as f64);
    let gamma: Vec<f64> = layer.weight().to_vec();
    let beta: Vec<f64> = layer.bias().map(<[f64]>::to_vec).unwrap_or_default();

    let gd_vs_closed = fits
        .iter()
        .zip(gamma.iter().zip(&beta))
        .map(|(f, (gm, bt))| (gm - f.traj[0]).abs().max((bt - f.traj[1]).abs()))
        .fold(0.0, f64::max);
    let dist_opt = fits
        .iter()
        .zip(gamma.iter().zip(&beta))
        .map(|(f, (gm, bt))| ((gm - f.opt[0]).powi(2) + (bt - f.opt[1]).powi(2)).sqrt())
        .fold(0.0, f64::max);
    let dist_bound = rho.powf(cfg.steps as f64) * start_dist;
    let (g_lo, g_hi) = min_max(gamma.iter().copied());
    let (b_lo, b_hi) = min_max(beta.iter().copied());
    let (g_mean, b_mean) = (mean(&gamma), mean(&beta));
    let gamma_gap = gamma.iter().map(|v| (v - sigma).abs()).fold(0.0, f64::max);
    let beta_gap = beta.iter().map(|v| (v - mu).abs()).fold(0.0, f64::max);
    let opt_gap = fits
        .iter()
        .map(|f| ((f.opt[0] - sigma).abs()).max((f.opt[1] - mu).abs()))
        .fold(0.0, f64::max);
    // Sampling scale of the optimum around (σ, μ): each γ*_j, β*_j is a regression over
    // n samples whose residual is the discarded per-sample statistics (variance ~σ²/d).
    let opt_scale = sigma * (2.0 / (n * d) as f64).sqrt();
    let (loss0, loss_t) = (losses[0], losses[cfg.steps]);
    let loss_pred = 1.5 * sigma * sigma;

    let findings = vec![
        summary_finding(
            "learned_gamma_mean",
            g_mean,
            "",
            format!(
                "Learned from γ = 1, β = 0 by {} steps of gradient descent through the manual \
                 LayerNorm backward, γ reaches {} (features range [{}, {}]) against σ = {} and β \
                 reaches {} (range [{}, {}]) against μ = {}: the parameters find the original \
                 scale and shift.",
                cfg.steps,
                sig(g_mean, 4),
                sig(g_lo, 4),
                sig(g_hi, 4),
                sigma,
                sig(b_mean, 4),
                sig(b_lo, 4),
                sig(b_hi, 4),
                mu
            ),
        ),
        finding(
            "learned_beta_mean",
            b_mean,
            "",
            format!(
                "Mean learned β over the {d} features: {} (μ = {mu}).",
                sig(b_mean, 4)
            ),
        ),
        finding(
            "max_gamma_gap",
            gamma_gap,
            "",
            format!(
                "Largest |γ_j − σ| after training: {} ({}% of σ).",
                g(gamma_gap),
                g(100.0 * gamma_gap / sigma)
            ),
        ),
        finding(
            "max_beta_gap",
            beta_gap,
            "",
            format!(
                "Largest |β_j − μ| after training: {} ({}% of σ).",
                g(beta_gap),
                g(100.0 * beta_gap / sigma)
            ),
        ),
        finding(
            "optimum_gap",
            opt_gap,
            "",
            format!(
                "What gradient descent converges to is the least-squares optimum, not σ and μ \
                 exactly: the optimum lies within {} of (σ, μ) for every feature, {}× the sampling \
                 scale σ·√(2/(n·d)) = {}.",
                g(opt_gap),
                g(opt_gap / opt_scale),
                g(opt_scale)
            ),
        ),
        finding(
            "distance_to_optimum",
            dist_opt,
            "",
            format!(
                "After {} steps the learned (γ_j, β_j) are within {} of the least-squares \
                 optimum; gradient descent on this quadratic guarantees at most ρ^T·‖θ₀ − θ*‖ = {} \
                 (ρ = {}, Hessian eigenvalues in [{}, {}]).",
                cfg.steps,
                g(dist_opt),
                g(dist_bound),
                sig(rho, 4),
                sig(eig_lo, 3),
                sig(eig_hi, 3)
            ),
        ),
        finding(
            "hessian_min_eigenvalue",
            eig_lo,
            "",
            format!(
                "The loss is quadratic with Hessian eigenvalues in [{}, {}] (≈ 2 when the \
                 normalized features have mean 0 and unit second moment), so each step shrinks \
                 the distance to the optimum by at least ρ = {}.",
                sig(eig_lo, 3),
                sig(eig_hi, 3),
                sig(rho, 4)
            ),
        ),
        finding(
            "gd_vs_closed_form",
            gd_vs_closed,
            "",
            format!(
                "The learned parameters match the exact gradient-descent trajectory \
                 θ* + (I − lr·H)^T·(θ₀ − θ*) within {}: the manual backward gives the true gradient.",
                g(gd_vs_closed)
            ),
        ),
        finding(
            "final_loss",
            loss_t,
            "",
            format!(
                "The loss falls from {} to {}, and stops at the least-squares minimum {} (≈ 1.5σ² \
                 = {}): the per-sample means and spreads LayerNorm removed cannot be restored by \
                 parameters shared across samples.",
                sig(loss0, 3),
                sig(loss_t, 4),
                sig(loss_opt, 4),
                sig(loss_pred, 3)
            ),
        ),
        finding(
            "per_sample_inverse_error",
            inv_err,
            "",
            format!(
                "With each sample's own statistics, √(var_i + eps)·x̂ + mean_i gives back every \
                 input value within {}·σ: normalization loses nothing but those two numbers per sample.",
                g(inv_err)
            ),
        ),
        finding(
            "population_restore_rms_error",
            pop_rms,
            "",
            format!(
                "With γ = σ, β = μ for every feature the distribution comes back (mean {} and std \
                 {} against {} and {}; largest moment gap {}·σ), but each value only within an \
                 RMS error of {}·σ, as predicted by √(1.5/d) = {}: the sample-to-sample jitter of \
                 mean and spread.",
                sig(r_mean, 4),
                sig(r_std, 4),
                sig(x_mean, 4),
                sig(x_std, 4),
                g(moment_gap),
                sig(pop_rms, 3),
                sig(pop_rms_pred, 3)
            ),
        ),
        finding(
            "restored_moment_gap",
            moment_gap,
            "",
            format!(
                "Mean and std of the restored batch differ from the original's by at most {}·σ.",
                g(moment_gap)
            ),
        ),
    ];

    let steps_x: Vec<f64> = (0..=cfg.steps).map(|t| t as f64).collect();
    let last = cfg.steps as f64;
    let line = |label: &str, y: Vec<f64>, style| LineSeries {
        label: label.to_owned(),
        x: steps_x.clone(),
        y,
        style,
    };
    let feat_x: Vec<f64> = (0..d).map(|j| j as f64).collect();
    let panels = vec![
        Panel {
            title: "Original, Normalized, Restored (γ = σ, β = μ)".to_owned(),
            x_label: "value".to_owned(),
            y_label: "density".to_owned(),
            content: PanelContent::Histogram {
                series: vec![
                    histogram(&format!("original N({mu}, {sigma}²)"), &x_flat, cfg.bins),
                    histogram("LayerNorm output x̂", &xh_flat, cfg.bins),
                    histogram("restored σ·x̂ + μ", &r_flat, cfg.bins),
                ],
                overlays: vec![],
            },
        },
        Panel {
            title: "Training Loss (Gradient Descent on γ, β)".to_owned(),
            x_label: "step".to_owned(),
            y_label: "loss (per-sample squared error)".to_owned(),
            content: PanelContent::Lines {
                series: vec![
                    line("loss", losses.clone(), LineStyle::Solid),
                    segment("least-squares minimum", 0.0, loss_opt, last, loss_opt),
                ],
                x_scale: Scale::Linear,
                y_scale: Scale::Log,
            },
        },
        Panel {
            title: "Parameters vs Step (Mean over Features)".to_owned(),
            x_label: "step".to_owned(),
            y_label: "parameter value".to_owned(),
            content: PanelContent::Lines {
                series: vec![
                    line("γ (scale)", gamma_mean, LineStyle::Solid),
                    line("β (shift)", beta_mean, LineStyle::Solid),
                    segment(&format!("σ = {sigma}"), 0.0, sigma, last, sigma),
                    segment(&format!("μ = {mu}"), 0.0, mu, last, mu),
                ],
                x_scale: Scale::Linear,
                y_scale: Scale::Linear,
            },
        },
        Panel {
            title: "Learned γ_j, β_j per Feature".to_owned(),
            x_label: "feature index".to_owned(),
            y_label: "learned value".to_owned(),
            content: PanelContent::Scatter {
                series: vec![
                    ScatterSeries {
                        label: "γ_j".to_owned(),
                        x: feat_x.clone(),
                        y: gamma,
                    },
                    ScatterSeries {
                        label: "β_j".to_owned(),
                        x: feat_x,
                        y: beta,
                    },
                ],
                lines: vec![
                    segment(&format!("σ = {sigma}"), 0.0, sigma, (d - 1) as f64, sigma),
                    segment(&format!("μ = {mu}"), 0.0, mu, (d - 1) as f64, mu),
                ],
                x_scale: Scale::Linear,
                y_scale: Scale::Linear,
            },
        },
    ];

    Ok(StudyResult {
        id: ID.to_owned(),
        title: TITLE.to_owned(),
        explanation: vec![
            format!(
                "{n} samples of {d} features are drawn from N({mu}, {sigma}²) and normalized by \
                 LayerNorm (eps = {}). LayerNorm then applies y = γ ⊙ x̂ + β with one γ_j and β_j \
                 per feature, shared by all samples.",
                g(cfg.eps)
            ),
            "Setting γ = σ and β = μ restores the original distribution: same mean, same spread, \
             same histogram. It does not restore each value exactly, because every sample had its \
             own mean and spread (off from μ and σ by chance, by about σ/√d), and those are \
             exactly what LayerNorm removed. Only the per-sample statistics invert it exactly."
                .to_owned(),
            format!(
                "Then γ and β are learned: starting from γ = 1, β = 0, plain gradient descent \
                 (lr = {}, {} steps) minimizes the per-sample squared error to the original input, \
                 with gradients from the hand-written LayerNorm backward. The loss is quadratic in \
                 (γ_j, β_j), so its minimum and the exact descent path are known in closed form; \
                 the learned values follow that path and settle at the least-squares optimum, \
                 which sits next to (σ, μ). The loss levels off above 0, at about 1.5σ²: the part \
                 that no shared parameter can bring back.",
                cfg.lr, cfg.steps
            ),
        ],
        figure: Figure {
            title: "Learnable Parameters: gamma (scale) and beta (shift) Can Undo Normalization".to_owned(),
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

    /// Asserts every claim for one config and seed, with thresholds from f64 rounding,
    /// the gradient-descent contraction bound and the sampling scale of the optimum.
    fn check(cfg: &Config, seed: u64) {
        let r = run(cfg, seed).expect("runs");
        check_shape(&r, ID);
        let (n, d) = (cfg.samples as f64, cfg.dim as f64);
        let sigma = cfg.std;
        // Exact inverse: rounding only.
        assert!(value(&r, "per_sample_inverse_error") < 1e-13);
        // Population restore: RMS error √(E[(s−σ)²] + E[(m−μ)²])/σ ≈ √(1.5/d); the
        // sample mean over n·d values has relative spread ~1/√n, allow 50%.
        let pop = value(&r, "population_restore_rms_error");
        let pred = (1.5 / d).sqrt();
        assert!((pop / pred - 1.0).abs() < 0.5, "{pop} vs {pred}");
        // Distribution-level moments: mean within a few σ/√(nd); std within rounding of
        // the pooled std (LN output variance is var/(var+eps) per sample, pooled ≈ 1).
        assert!(value(&r, "restored_moment_gap") < 6.0 / (n * d).sqrt() + 2.0 / d);
        // GD follows the closed-form trajectory (the backward is exact).
        assert!(value(&r, "gd_vs_closed_form") < 1e-10);
        // Contraction: gradient descent on a quadratic ends within ρ^T of the start
        // distance, ρ = 1 − lr·λ_min (lr·λ_max < 1 here). The start (1, 0) is about
        // √((1−σ)² + μ²) from the optimum; allow 20% for the optimum's offset.
        let lam = value(&r, "hessian_min_eigenvalue");
        assert!(
            lam > 0.0 && lam <= 2.0 + 1e-9,
            "λ_min {lam}: at most the β curvature 2"
        );
        let start = ((1.0 - sigma).powi(2) + cfg.mean.powi(2)).sqrt() * 1.2;
        let bound = (1.0 - cfg.lr * lam).powi(cfg.steps as i32) * start;
        let dist = value(&r, "distance_to_optimum");
        assert!(dist < bound, "{dist:e} vs {bound:e}");
        // The optimum is within 5 sampling scales (+ the O(σ/d) bias of the sample std).
        let scale = sigma * (2.0 / (n * d)).sqrt();
        assert!(
            value(&r, "optimum_gap") < 6.0 * scale + sigma / d,
            "{}",
            value(&r, "optimum_gap")
        );
        // Hence the learned parameters are within both of σ, μ.
        for name in ["max_gamma_gap", "max_beta_gap"] {
            assert!(value(&r, name) < 6.0 * scale + sigma / d + bound, "{name}");
        }
        assert!((value(&r, "learned_gamma_mean") - sigma).abs() < 3.0 * scale + sigma / d + bound);
        assert!((value(&r, "learned_beta_mean") - cfg.mean).abs() < 3.0 * scale + bound);
        // The loss levels off at ≈ 1.5σ² (per-sample statistics lost), well below the start.
        let fl = value(&r, "final_loss");
        assert!((fl / (1.5 * sigma * sigma) - 1.0).abs() < 0.5, "{fl}");
        assert!(statement(&r, "final_loss").contains(&sig(fl, 4)));
        let PanelContent::Lines { series, .. } = &r.figure.panels[1].content else {
            panic!("panel 1 is lines");
        };
        let loss = &series[0].y;
        assert_eq!(loss.len(), cfg.steps + 1);
        assert!(
            loss.windows(2).all(|w| w[1] <= w[0] * (1.0 + 1e-12)),
            "loss never rises"
        );
        assert!(loss[0] > 10.0 * fl);
    }

    #[test]
    fn claims_hold_on_small_configs() {
        for seed in [42, 7, 2026] {
            check(&Config::small(), seed);
        }
        check(
            &Config {
                mean: -1.0,
                std: 0.5,
                eps: 0.0,
                ..Config::small()
            },
            3,
        );
    }

    /// 128 × 256 f64 is 256 KiB, where norm-core splits the forward across the rayon
    /// pool: one thread and two must give the same bytes.
    #[test]
    fn same_bytes_on_one_and_two_threads() {
        let cfg = Config {
            steps: 20,
            ..Config::default()
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
    fn deterministic_per_seed() {
        check_determinism(|s| run(&Config::small(), s));
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let c = Config::small;
        check_invalid(run(&Config { samples: 1, ..c() }, 1), "samples");
        check_invalid(run(&Config { dim: 0, ..c() }, 1), "dim");
        check_invalid(run(&Config { steps: 0, ..c() }, 1), "steps");
        check_invalid(run(&Config { bins: 0, ..c() }, 1), "bins");
        check_invalid(run(&Config { std: 0.0, ..c() }, 1), "std");
        check_invalid(
            run(
                &Config {
                    mean: f64::NAN,
                    ..c()
                },
                1,
            ),
            "mean",
        );
        check_invalid(run(&Config { eps: -1.0, ..c() }, 1), "eps");
        check_invalid(run(&Config { lr: 0.0, ..c() }, 1), "lr");
        check_invalid(run(&Config { lr: 0.6, ..c() }, 1), "lr");
    }
}
