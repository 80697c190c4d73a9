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
use norm_autograd::{Norm, mse_loss, sgd_step};
use norm_core::LayerNorm;
use serde::Serialize;

use crate::common::{
    finding, normal, require_at_least, require_finite, require_non_negative, require_positive,
    summary_finding,
};
use crate::format::{g, sig};
use crate::references::Reference;
use crate::result::{
    Figure, Finding, HistogramSeries, LineSeries, LineStyle, Panel, PanelContent, Scale, ScatterSeries,
};
use crate::stats::{histogram, max_abs, mean, min_max, segment, std_dev};
use crate::study::{Study, StudyConfig};
use crate::{StudyError, study_rng};

/// Stable id.
pub const ID: &str = "learnable-affine";

/// Configuration of the learnable-affine study.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
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

impl StudyConfig for Config {
    /// A small config for tests: 64 × 64, 200 steps at lr 0.04.
    fn small() -> Self {
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
    /// (`lr ≥ 0.5`: the loss curvature is about 2 per parameter, see `fit_feature`).
    fn validate(&self) -> Result<(), StudyError> {
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

/// The study (registry type).
///
/// # Example
/// ```
/// use norm_experiments::{Study, StudyConfig};
/// use norm_experiments::studies::learnable_affine::{Config, LearnableAffine};
/// let cfg = Config::small();
/// let m = LearnableAffine::measure(&cfg, 42)?;
/// let gamma = m.gamma.iter().sum::<f64>() / m.gamma.len() as f64;
/// assert!((gamma - cfg.std).abs() < 0.1);
/// # Ok::<(), norm_experiments::StudyError>(())
/// ```
pub struct LearnableAffine;

/// Mean and std of a whole batch (all values pooled).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Moments {
    /// Mean.
    pub mean: f64,
    /// Population std.
    pub std: f64,
}

/// Everything the learnable-affine study measures.
#[derive(Debug, Clone, Serialize)]
pub struct Measurements {
    /// (samples, features).
    pub shape: (usize, usize),
    /// Largest |√(var_i + eps)·x̂ + mean_i − x| / σ: the exact per-sample inverse.
    pub per_sample_inverse_error: f64,
    /// RMS of (σ·x̂ + μ − x) / σ over the batch: the per-feature restore γ = σ, β = μ.
    pub population_rms_error: f64,
    /// Its prediction √(1.5/d).
    pub population_rms_error_pred: f64,
    /// Moments of the original batch.
    pub input: Moments,
    /// Moments of the restored batch σ·x̂ + μ.
    pub restored: Moments,
    /// Largest of |Δmean|/σ and |Δstd|/σ between the two.
    pub moment_gap: f64,
    /// Least-squares minimum of the loss (closed form).
    pub loss_at_optimum: f64,
    /// Smallest and largest Hessian eigenvalue over the features.
    pub hessian_eigenvalues: (f64, f64),
    /// Per-step contraction of gradient descent, max |1 − lr·λ|.
    pub contraction: f64,
    /// Largest distance from the start (1, 0) to a feature's optimum.
    pub start_distance: f64,
    /// Largest max(|γ*_j − σ|, |β*_j − μ|) over the features.
    pub optimum_gap: f64,
    /// The optimum's sampling scale σ·√(2/(n·d)).
    pub optimum_scale: f64,
    /// Loss before each step and after the last (`steps + 1` values).
    pub losses: Vec<f64>,
    /// Mean γ over the features, per step (`steps + 1` values).
    pub gamma_mean: Vec<f64>,
    /// Mean β over the features, per step.
    pub beta_mean: Vec<f64>,
    /// Learned γ_j per feature.
    pub gamma: Vec<f64>,
    /// Learned β_j per feature.
    pub beta: Vec<f64>,
    /// Largest |learned − closed-form trajectory| over γ_j, β_j.
    pub gd_vs_closed_form: f64,
    /// Largest distance of a learned (γ_j, β_j) from its least-squares optimum.
    pub distance_to_optimum: f64,
    /// Histograms of the original, normalized and restored batch.
    pub histograms: Vec<HistogramSeries>,
}

impl Study for LearnableAffine {
    const ID: &'static str = ID;
    const TITLE: &'static str = "Learnable Parameters";
    const SUMMARY: &'static str = "gamma/beta can recover original distribution if the network learns to.";
    type Config = Config;
    type Measurements = Measurements;

    /// Draws `samples × dim` values from N(μ, σ²), normalizes them with a
    /// `norm_autograd::Norm` LayerNorm (γ = 1, β = 0), restores them, then learns γ and β
    /// by gradient descent. The training loss is the per-sample squared error against the
    /// original input; its gradient goes through `norm_autograd`'s LayerNorm backward
    /// (dγ, dβ), and `sgd_step` updates the layer:
    ///
    /// ```text
    /// L(γ, β) = (1/n) Σ_i ‖γ ⊙ x̂_i + β − x_i‖²,   x̂_i = (x_i − mean_i)/√(var_i + eps)
    /// ```
    fn measure(cfg: &Config, seed: u64) -> Result<Measurements, StudyError> {
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
        let input = Moments {
            mean: mean(&x_flat),
            std: std_dev(&x_flat),
        };
        let restored_m = Moments {
            mean: mean(&r_flat),
            std: std_dev(&r_flat),
        };
        let moment_gap =
            ((restored_m.mean - input.mean).abs() / sigma).max((restored_m.std - input.std).abs() / sigma);

        // Closed forms per feature.
        let fits: Vec<FeatureFit> = (0..d)
            .map(|j| {
                let hcol: Vec<f64> = xh.column(j).to_vec();
                let xcol: Vec<f64> = x.column(j).to_vec();
                fit_feature(&hcol, &xcol, cfg.lr, cfg.steps)
            })
            .collect();
        let (eig_lo, _) = min_max(fits.iter().map(|f| f.eig.0));
        let (_, eig_hi) = min_max(fits.iter().map(|f| f.eig.1));

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
        }
        record(&layer, &mut gamma_mean, &mut beta_mean);
        let (y, _) = layer.forward(&x)?;
        losses.push(mse_loss(&y, &x)?.0 * d as f64);
        let gamma: Vec<f64> = layer.weight().to_vec();
        let beta: Vec<f64> = layer.bias().map(<[f64]>::to_vec).unwrap_or_default();

        let per_feature = |f: &dyn Fn(&FeatureFit, f64, f64) -> f64| {
            fits.iter()
                .zip(gamma.iter().zip(&beta))
                .map(|(fit, (&gm, &bt))| f(fit, gm, bt))
                .fold(0.0, f64::max)
        };
        let gd_vs_closed_form = per_feature(&|f, gm, bt| (gm - f.traj[0]).abs().max((bt - f.traj[1]).abs()));
        let distance_to_optimum =
            per_feature(&|f, gm, bt| ((gm - f.opt[0]).powi(2) + (bt - f.opt[1]).powi(2)).sqrt());

        Ok(Measurements {
            shape: (n, d),
            per_sample_inverse_error: inv_err,
            population_rms_error: pop_rms,
            // Per sample: x − (σx̂ + μ) = (s_i − σ)·x̂ + (m_i − μ), and Σ_j x̂_ij = 0, so the
            // mean square error is E[(s−σ)²] + E[(m−μ)²] ≈ σ²/(2d) + σ²/d.
            population_rms_error_pred: (1.5 / d as f64).sqrt(),
            input,
            restored: restored_m,
            moment_gap,
            loss_at_optimum: fits.iter().map(|f| f.loss_opt).sum(),
            hessian_eigenvalues: (eig_lo, eig_hi),
            contraction: (1.0 - cfg.lr * eig_lo).abs().max((1.0 - cfg.lr * eig_hi).abs()),
            start_distance: fits
                .iter()
                .map(|f| ((1.0 - f.opt[0]).powi(2) + f.opt[1].powi(2)).sqrt())
                .fold(0.0, f64::max),
            optimum_gap: fits
                .iter()
                .map(|f| ((f.opt[0] - sigma).abs()).max((f.opt[1] - mu).abs()))
                .fold(0.0, f64::max),
            // Sampling scale of the optimum around (σ, μ): each γ*_j, β*_j is a regression
            // over n samples whose residual is the discarded per-sample statistics.
            optimum_scale: sigma * (2.0 / (n * d) as f64).sqrt(),
            losses,
            gamma_mean,
            beta_mean,
            gamma,
            beta,
            gd_vs_closed_form,
            distance_to_optimum,
            histograms: vec![
                histogram(&format!("original N({mu}, {sigma}²)"), &x_flat, cfg.bins),
                histogram("LayerNorm output x̂", &xh_flat, cfg.bins),
                histogram("restored σ·x̂ + μ", &r_flat, cfg.bins),
            ],
        })
    }

    fn findings(cfg: &Config, m: &Measurements) -> Vec<Finding> {
        let (mu, sigma) = (cfg.mean, cfg.std);
        let d = m.shape.1;
        let (g_lo, g_hi) = min_max(m.gamma.iter().copied());
        let (b_lo, b_hi) = min_max(m.beta.iter().copied());
        let (g_mean, b_mean) = (mean(&m.gamma), mean(&m.beta));
        let gamma_gap = max_abs(m.gamma.iter().map(|v| v - sigma));
        let beta_gap = max_abs(m.beta.iter().map(|v| v - mu));
        let (eig_lo, eig_hi) = m.hessian_eigenvalues;
        let rho = m.contraction;
        let dist_bound = rho.powf(cfg.steps as f64) * m.start_distance;
        let (loss0, loss_t) = (m.losses[0], m.losses[m.losses.len() - 1]);
        vec![
            summary_finding(
                "learned_gamma_mean",
                g_mean,
                "",
                format!(
                    "Learned from γ = 1, β = 0 by {} steps of gradient descent through the \
                     manual LayerNorm backward, γ reaches {} (features range [{}, {}]) against σ \
                     = {} and β reaches {} (range [{}, {}]) against μ = {}: the parameters find \
                     the original scale and shift.",
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
            )
            .labelled("Mean learned γ (gain)")
            .cite(&[Reference::Ba2016]),
            finding(
                "learned_beta_mean",
                b_mean,
                "",
                format!(
                    "Mean learned β over the {d} features: {} (μ = {mu}).",
                    sig(b_mean, 4)
                ),
            )
            .labelled("Mean learned β (bias)")
            .cite(&[Reference::Ba2016]),
            finding(
                "max_gamma_gap",
                gamma_gap,
                "",
                format!(
                    "Largest |γ_j − σ| after training: {} ({}% of σ).",
                    g(gamma_gap),
                    g(100.0 * gamma_gap / sigma)
                ),
            )
            .labelled("Largest |γ_j − σ| after training"),
            finding(
                "max_beta_gap",
                beta_gap,
                "",
                format!(
                    "Largest |β_j − μ| after training: {} ({}% of σ).",
                    g(beta_gap),
                    g(100.0 * beta_gap / sigma)
                ),
            )
            .labelled("Largest |β_j − μ| after training"),
            finding(
                "optimum_gap",
                m.optimum_gap,
                "",
                format!(
                    "What gradient descent converges to is the least-squares optimum, not σ and \
                     μ exactly: the optimum lies within {} of (σ, μ) for every feature, {}× the \
                     sampling scale σ·√(2/(n·d)) = {}.",
                    g(m.optimum_gap),
                    g(m.optimum_gap / m.optimum_scale),
                    g(m.optimum_scale)
                ),
            )
            .labelled("Largest distance of the least-squares optimum from (σ, μ)"),
            finding(
                "distance_to_optimum",
                m.distance_to_optimum,
                "",
                format!(
                    "After {} steps the learned (γ_j, β_j) are within {} of the least-squares \
                     optimum; gradient descent on this quadratic guarantees at most ρ^T·‖θ₀ − \
                     θ*‖ = {} (ρ = {}, Hessian eigenvalues in [{}, {}]).",
                    cfg.steps,
                    g(m.distance_to_optimum),
                    g(dist_bound),
                    sig(rho, 4),
                    sig(eig_lo, 3),
                    sig(eig_hi, 3)
                ),
            )
            .labelled("Largest distance of the learned (γ_j, β_j) from the optimum"),
            finding(
                "hessian_min_eigenvalue",
                eig_lo,
                "",
                format!(
                    "The loss is quadratic with Hessian eigenvalues in [{}, {}] (≈ 2 when the \
                     normalized features have mean 0 and unit second moment), so each step \
                     shrinks the distance to the optimum by at least ρ = {}.",
                    sig(eig_lo, 3),
                    sig(eig_hi, 3),
                    sig(rho, 4)
                ),
            )
            .labelled("Smallest Hessian eigenvalue of the loss"),
            finding(
                "gd_vs_closed_form",
                m.gd_vs_closed_form,
                "",
                format!(
                    "The learned parameters match the exact gradient-descent trajectory θ* + (I \
                     − lr·H)^T·(θ₀ − θ*) within {}: the manual backward gives the true gradient.",
                    g(m.gd_vs_closed_form)
                ),
            )
            .labelled("Learned parameters vs the exact gradient-descent path"),
            finding(
                "final_loss",
                loss_t,
                "",
                format!(
                    "The loss falls from {} to {}, and stops at the least-squares minimum {} (≈ \
                     1.5σ² = {}): the per-sample means and spreads LayerNorm removed cannot be \
                     restored by parameters shared across samples.",
                    sig(loss0, 3),
                    sig(loss_t, 4),
                    sig(m.loss_at_optimum, 4),
                    sig(1.5 * sigma * sigma, 3)
                ),
            )
            .labelled("Final training loss"),
            finding(
                "per_sample_inverse_error",
                m.per_sample_inverse_error,
                "",
                format!(
                    "With each sample's own statistics, √(var_i + eps)·x̂ + mean_i gives back \
                     every input value within {}·σ: normalization loses nothing but those two \
                     numbers per sample.",
                    g(m.per_sample_inverse_error)
                ),
            )
            .labelled("Largest error of the exact per-sample inverse (× σ)"),
            finding(
                "population_restore_rms_error",
                m.population_rms_error,
                "",
                format!(
                    "With γ = σ, β = μ for every feature the distribution comes back (mean {} \
                     and std {} against {} and {}; largest moment gap {}·σ), but each value only \
                     within an RMS error of {}·σ, as predicted by √(1.5/d) = {}: the \
                     sample-to-sample jitter of mean and spread.",
                    sig(m.restored.mean, 4),
                    sig(m.restored.std, 4),
                    sig(m.input.mean, 4),
                    sig(m.input.std, 4),
                    g(m.moment_gap),
                    sig(m.population_rms_error, 3),
                    sig(m.population_rms_error_pred, 3)
                ),
            )
            .labelled("RMS error of the restore γ = σ, β = μ (× σ)"),
            finding(
                "restored_moment_gap",
                m.moment_gap,
                "",
                format!(
                    "Mean and std of the restored batch differ from the original's by at most \
                     {}·σ.",
                    g(m.moment_gap)
                ),
            )
            .labelled("Largest gap in mean or std, restored vs original (× σ)"),
        ]
    }

    fn explanation(cfg: &Config, m: &Measurements) -> Vec<String> {
        let (n, d) = m.shape;
        let (mu, sigma) = (cfg.mean, cfg.std);
        vec![
            format!(
                "{n} samples of {d} features are drawn from N({mu}, {sigma}²) and normalized by \
                 LayerNorm (eps = {}). LayerNorm then applies y = γ ⊙ x̂ + β with one γ_j and \
                 β_j per feature, shared by all samples.",
                g(cfg.eps)
            ),
            "Setting γ = σ and β = μ restores the original distribution: same mean, same \
             spread, same histogram. It does not restore each value exactly, because every \
             sample had its own mean and spread (off from μ and σ by chance, by about σ/√d), and \
             those are exactly what LayerNorm removed. Only the per-sample statistics invert it \
             exactly."
                .to_owned(),
            format!(
                "Then γ and β are learned: starting from γ = 1, β = 0, plain gradient descent \
                 (lr = {}, {} steps) minimizes the per-sample squared error to the original \
                 input, with gradients from the hand-written LayerNorm backward. The loss is \
                 quadratic in (γ_j, β_j), so its minimum and the exact descent path are known in \
                 closed form; the learned values follow that path and settle at the \
                 least-squares optimum, which sits next to (σ, μ). The loss levels off above 0, \
                 at about 1.5σ²: the part that no shared parameter can bring back.",
                cfg.lr, cfg.steps
            ),
        ]
    }

    fn caption(_: &Config, _: &Measurements) -> String {
        "(a): the original data, its LayerNorm output x̂, and σ·x̂ + μ laid over the original. \
         (b): the training loss against its least-squares minimum; (c): the learned γ and β \
         (means over features) approaching the reference lines σ and μ; (d): every feature's \
         learned γ_j and β_j."
            .to_owned()
    }

    fn figure(cfg: &Config, m: &Measurements) -> Figure {
        let (mu, sigma) = (cfg.mean, cfg.std);
        let d = m.shape.1;
        let steps_x: Vec<f64> = (0..m.losses.len()).map(|t| t as f64).collect();
        let last = (m.losses.len() - 1) as f64;
        let line = |label: &str, y: &[f64], style| LineSeries {
            label: label.to_owned(),
            x: steps_x.clone(),
            y: y.to_vec(),
            style,
        };
        let feat_x: Vec<f64> = (0..d).map(|j| j as f64).collect();
        let panels = vec![
            Panel {
                title: "Original, Normalized, Restored (γ = σ, β = μ)".to_owned(),
                x_label: "value".to_owned(),
                y_label: "density".to_owned(),
                content: PanelContent::Histogram {
                    series: m.histograms.clone(),
                    overlays: vec![],
                },
            },
            Panel {
                title: "Training Loss (Gradient Descent on γ, β)".to_owned(),
                x_label: "step".to_owned(),
                y_label: "loss (per-sample squared error)".to_owned(),
                content: PanelContent::Lines {
                    series: vec![
                        line("loss", &m.losses, LineStyle::Solid),
                        segment(
                            "least-squares minimum",
                            0.0,
                            m.loss_at_optimum,
                            last,
                            m.loss_at_optimum,
                        ),
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
                        line("γ (scale)", &m.gamma_mean, LineStyle::Solid),
                        line("β (shift)", &m.beta_mean, LineStyle::Solid),
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
                            y: m.gamma.clone(),
                        },
                        ScatterSeries {
                            label: "β_j".to_owned(),
                            x: feat_x,
                            y: m.beta.clone(),
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
        Figure {
            title: "Learnable Parameters: gamma (scale) and beta (shift) Can Undo Normalization".to_owned(),
            panels,
            columns: 2,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_determinism, check_invalid, check_shape};

    /// Asserts every claim for one config and seed, with thresholds from f64 rounding,
    /// the gradient-descent contraction bound and the sampling scale of the optimum.
    fn check(cfg: &Config, seed: u64) {
        check_shape(&LearnableAffine::run(cfg, seed).expect("runs"), ID);
        let m = LearnableAffine::measure(cfg, seed).expect("measures");
        let (n, d) = (cfg.samples as f64, cfg.dim as f64);
        let sigma = cfg.std;
        // Exact inverse: rounding only.
        assert!(m.per_sample_inverse_error < 1e-13);
        // Population restore: RMS error √(E[(s−σ)²] + E[(m−μ)²])/σ ≈ √(1.5/d); the
        // sample mean over n·d values has relative spread ~1/√n, allow 50%.
        let pred = (1.5 / d).sqrt();
        assert_eq!(m.population_rms_error_pred, pred);
        assert!(
            (m.population_rms_error / pred - 1.0).abs() < 0.5,
            "{}",
            m.population_rms_error
        );
        // Distribution-level moments: mean within a few σ/√(nd); std within rounding of
        // the pooled std (LN output variance is var/(var+eps) per sample, pooled ≈ 1).
        assert!(m.moment_gap < 6.0 / (n * d).sqrt() + 2.0 / d);
        // GD follows the closed-form trajectory (the backward is exact).
        assert!(m.gd_vs_closed_form < 1e-10);
        // Contraction: gradient descent on a quadratic ends within ρ^T of the start
        // distance, ρ = 1 − lr·λ_min (lr·λ_max < 1 here). The start (1, 0) is about
        // √((1−σ)² + μ²) from the optimum; allow 20% for the optimum's offset.
        let (lam, lam_hi) = m.hessian_eigenvalues;
        assert!(
            lam > 0.0 && lam <= 2.0 + 1e-9,
            "λ_min {lam}: at most the β curvature 2"
        );
        assert!(lam_hi >= 2.0 - 1e-9 && cfg.lr * lam_hi < 1.0, "λ_max {lam_hi}");
        let start = ((1.0 - sigma).powi(2) + cfg.mean.powi(2)).sqrt() * 1.2;
        assert!(m.start_distance < start);
        let bound = (1.0 - cfg.lr * lam).powi(cfg.steps as i32) * start;
        assert!(
            m.distance_to_optimum < bound,
            "{:e} vs {bound:e}",
            m.distance_to_optimum
        );
        // The optimum is within 6 sampling scales (+ the O(σ/d) bias of the sample std).
        let scale = sigma * (2.0 / (n * d)).sqrt();
        assert!((m.optimum_scale - scale).abs() < 1e-15);
        assert!(m.optimum_gap < 6.0 * scale + sigma / d, "{}", m.optimum_gap);
        // Hence the learned parameters are within both of σ, μ.
        assert_eq!((m.gamma.len(), m.beta.len()), (cfg.dim, cfg.dim));
        let gap = 6.0 * scale + sigma / d + bound;
        assert!(m.gamma.iter().all(|g| (g - sigma).abs() < gap));
        assert!(m.beta.iter().all(|b| (b - cfg.mean).abs() < gap));
        assert!((mean(&m.gamma) - sigma).abs() < 3.0 * scale + sigma / d + bound);
        assert!((mean(&m.beta) - cfg.mean).abs() < 3.0 * scale + bound);
        // The recorded mean parameters start at (1, 0) and end at the learned means.
        assert_eq!((m.gamma_mean[0], m.beta_mean[0]), (1.0, 0.0));
        assert_eq!(m.gamma_mean[cfg.steps], mean(&m.gamma));
        // The loss never rises and levels off at ≈ 1.5σ² (per-sample statistics lost),
        // at the closed-form minimum, well below the start.
        let loss = &m.losses;
        assert_eq!(loss.len(), cfg.steps + 1);
        assert!(
            loss.windows(2).all(|w| w[1] <= w[0] * (1.0 + 1e-12)),
            "loss never rises"
        );
        let fl = loss[cfg.steps];
        assert!((fl / (1.5 * sigma * sigma) - 1.0).abs() < 0.5, "{fl}");
        assert!(fl >= m.loss_at_optimum * (1.0 - 1e-12));
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
            let r = pool.install(|| LearnableAffine::run(&cfg, 42)).expect("runs");
            serde_json::to_string(&r).expect("serializes")
        };
        assert_eq!(json(1), json(2));
    }

    #[test]
    fn deterministic_per_seed() {
        check_determinism(|s| LearnableAffine::run(&Config::small(), s));
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let c = Config::small;
        let run = |cfg: Config| LearnableAffine::run(&cfg, 1);
        check_invalid(run(Config { samples: 1, ..c() }), "samples");
        check_invalid(run(Config { dim: 0, ..c() }), "dim");
        check_invalid(run(Config { steps: 0, ..c() }), "steps");
        check_invalid(run(Config { bins: 0, ..c() }), "bins");
        check_invalid(run(Config { std: 0.0, ..c() }), "std");
        check_invalid(
            run(Config {
                mean: f64::NAN,
                ..c()
            }),
            "mean",
        );
        check_invalid(run(Config { eps: -1.0, ..c() }), "eps");
        check_invalid(run(Config { lr: 0.0, ..c() }), "lr");
        check_invalid(run(Config { lr: 0.6, ..c() }), "lr");
    }
}
