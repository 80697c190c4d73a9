//! Statistics shared by the studies, all in f64: mean, two-pass variance, Pearson r,
//! per-row statistics, histograms as densities, the normal density, linear/log grids.
//! No randomness and no formatting here.

use crate::result::{HistogramSeries, LineSeries, LineStyle};

/// Arithmetic mean (0 for an empty slice).
///
/// ```text
/// mean = (1/n) Σ x_i
/// ```
pub(crate) fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().sum::<f64>() / x.len() as f64
}

/// Population variance by two passes (never `E[x²] − E[x]²`); 0 for an empty slice.
///
/// ```text
/// var = (1/n) Σ (x_i − mean)²
/// ```
pub(crate) fn variance(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    let m = mean(x);
    x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / x.len() as f64
}

/// Population standard deviation, `sqrt(variance)`.
pub(crate) fn std_dev(x: &[f64]) -> f64 {
    variance(x).sqrt()
}

/// Pearson correlation of two equally long series, by centered sums (two passes).
///
/// ```text
/// r = Σ (x−x̄)(y−ȳ) / sqrt(Σ (x−x̄)² · Σ (y−ȳ)²)
/// ```
///
/// NaN when either series is constant or the lengths differ.
pub(crate) fn pearson_r(x: &[f64], y: &[f64]) -> f64 {
    if x.len() != y.len() || x.is_empty() {
        return f64::NAN;
    }
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (da, db) = (a - mx, b - my);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    sxy / (sxx * syy).sqrt()
}

/// Per-row statistics of a row-major matrix with rows of length `d`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RowStats {
    /// Row mean.
    pub mean: f64,
    /// Row population variance (two-pass).
    pub var: f64,
    /// Row mean square, `(1/d) Σ x²`.
    pub mean_sq: f64,
}

impl RowStats {
    /// Population standard deviation.
    pub fn std(&self) -> f64 {
        self.var.sqrt()
    }
    /// Root mean square.
    pub fn rms(&self) -> f64 {
        self.mean_sq.sqrt()
    }
}

/// Statistics of each `d`-long row of `x` (a trailing partial row is ignored; `d = 0`
/// gives no rows).
pub(crate) fn row_stats(x: &[f64], d: usize) -> Vec<RowStats> {
    if d == 0 {
        return Vec::new();
    }
    x.chunks_exact(d)
        .map(|r| RowStats {
            mean: mean(r),
            var: variance(r),
            mean_sq: r.iter().map(|v| v * v).sum::<f64>() / d as f64,
        })
        .collect()
}

/// Smallest and largest value, ignoring NaN; `(inf, -inf)` when there is none.
pub(crate) fn min_max(x: impl IntoIterator<Item = f64>) -> (f64, f64) {
    x.into_iter()
        .filter(|v| !v.is_nan())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
}

/// Largest absolute value, ignoring NaN (0 when empty).
pub(crate) fn max_abs(x: impl IntoIterator<Item = f64>) -> f64 {
    x.into_iter()
        .filter(|v| !v.is_nan())
        .fold(0.0, |a, v| a.max(v.abs()))
}

/// A histogram of the finite `values` over `bins` equal bins spanning their range, as
/// a density (integrates to 1). Constant or empty input gives one bin of width 1
/// around the value.
pub(crate) fn histogram(label: &str, values: &[f64], bins: usize) -> HistogramSeries {
    let (lo, hi) = min_max(values.iter().copied().filter(|v| v.is_finite()));
    let bins = bins.max(1);
    let (lo, hi, bins) = if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
        let c = if lo.is_finite() { lo } else { 0.0 };
        (c - 0.5, c + 0.5, 1)
    } else {
        (lo, hi, bins)
    };
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u64; bins];
    let mut total = 0u64;
    for &v in values.iter().filter(|v| v.is_finite()) {
        let k = (((v - lo) / width) as usize).min(bins - 1);
        counts[k] += 1;
        total += 1;
    }
    let edges = (0..=bins).map(|k| lo + width * k as f64).collect();
    let norm = if total == 0 {
        0.0
    } else {
        1.0 / (total as f64 * width)
    };
    let density = counts.iter().map(|&c| c as f64 * norm).collect();
    HistogramSeries {
        label: label.to_owned(),
        edges,
        density,
    }
}

/// The standard normal density `exp(−x²/2)/√(2π)` sampled at `n` points on `[lo, hi]`.
pub(crate) fn normal_density(label: &str, lo: f64, hi: f64, n: usize) -> LineSeries {
    let x = linspace(lo, hi, n);
    let y = x
        .iter()
        .map(|v| (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt())
        .collect();
    LineSeries {
        label: label.to_owned(),
        x,
        y,
        style: LineStyle::Dashed,
    }
}

/// `n` evenly spaced points from `lo` to `hi` inclusive (`[lo]` for `n = 1`).
pub(crate) fn linspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![lo],
        _ => (0..n)
            .map(|k| lo + (hi - lo) * k as f64 / (n - 1) as f64)
            .collect(),
    }
}

/// Points from `lo` to `hi` (both > 0) evenly spaced in log10, `per_decade` per decade,
/// both ends included.
pub(crate) fn logspace(lo: f64, hi: f64, per_decade: usize) -> Vec<f64> {
    let (a, b) = (lo.log10(), hi.log10());
    let n = (((b - a) * per_decade as f64).round() as usize).max(1) + 1;
    linspace(a, b, n).into_iter().map(|e| 10f64.powf(e)).collect()
}

/// A straight reference line through `(x0, y0)` and `(x1, y1)`.
pub(crate) fn segment(label: &str, x0: f64, y0: f64, x1: f64, y1: f64) -> LineSeries {
    LineSeries {
        label: label.to_owned(),
        x: vec![x0, x1],
        y: vec![y0, y1],
        style: LineStyle::Dashed,
    }
}

/// `‖a‖₂` of f32 values, the squares summed in f64 (where no f32 square can overflow or
/// underflow, so no scaling is needed) in eight fixed lanes over memory order: the same
/// number every run. Studies 6 and 7 take their many gradient norms with it.
pub(crate) fn norm_f64<D: ndarray::Dimension>(a: &ndarray::ArrayRef<f32, D>) -> f64 {
    let sq = |v: f32| f64::from(v) * f64::from(v);
    let sum = match a.as_slice_memory_order() {
        Some(s) => {
            let chunks = s.chunks_exact(8);
            let rest: f64 = chunks.remainder().iter().map(|&v| sq(v)).sum();
            let mut lanes = [0.0f64; 8];
            for c in chunks {
                for (l, &v) in lanes.iter_mut().zip(c) {
                    *l += sq(v);
                }
            }
            lanes.iter().sum::<f64>() + rest
        }
        None => a.iter().map(|&v| sq(v)).sum(),
    };
    sum.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_match_hand_values() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(mean(&x), 2.5);
        assert_eq!(variance(&x), 1.25);
        let s = row_stats(&[1.0, 3.0, 10.0, 10.0], 2);
        assert_eq!(s[0].mean, 2.0);
        assert_eq!(s[0].var, 1.0);
        assert_eq!(s[1].var, 0.0);
        assert_eq!(s[1].mean_sq, 100.0);
    }

    #[test]
    fn variance_is_exact_on_offset_data() {
        // E[x²] − E[x]² would lose every digit here.
        let x = [1e9 + 1.0, 1e9 + 2.0, 1e9 + 3.0];
        assert!((variance(&x) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn pearson_of_affine_maps() {
        let x = [1.0, 2.0, 4.0, 8.0];
        let y: Vec<f64> = x.iter().map(|v| 3.0 - 2.0 * v).collect();
        assert!((pearson_r(&x, &y) + 1.0).abs() < 1e-15);
        assert!(pearson_r(&x, &[1.0, 1.0, 1.0, 1.0]).is_nan());
        assert!(pearson_r(&x, &[1.0]).is_nan());
    }

    #[test]
    fn histogram_integrates_to_one() {
        let v: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.37).sin()).collect();
        let h = histogram("h", &v, 20);
        assert_eq!(h.edges.len(), 21);
        let area: f64 = h
            .density
            .iter()
            .zip(h.edges.windows(2))
            .map(|(d, e)| d * (e[1] - e[0]))
            .sum();
        assert!((area - 1.0).abs() < 1e-12);
        let c = histogram("c", &[2.0, 2.0], 10);
        assert_eq!(c.density, vec![1.0]);
    }

    #[test]
    fn grids() {
        assert_eq!(linspace(0.0, 1.0, 3), vec![0.0, 0.5, 1.0]);
        let g = logspace(1e-4, 1.0, 2);
        assert_eq!(g.len(), 9);
        assert!((g[1] / 1e-4 - 10f64.sqrt()).abs() < 1e-9);
        assert!((g[8] - 1.0).abs() < 1e-12);
    }
}
