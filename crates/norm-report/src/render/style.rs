//! Colours and number formatting shared by every panel kind: the series palette, the
//! heatmap colour map, tick values and labels, exact values for tooltips, data ranges.

use norm_experiments::result::{BlockKind, Scale};

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// `#rrggbb`.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// Series colours (the tab10 palette, each darker than 3:1 against white except the
/// lighter ones, which are only used as fills with an outline), used in order.
pub const PALETTE: [Rgb; 10] = [
    Rgb(31, 119, 180),
    Rgb(230, 110, 0),
    Rgb(44, 150, 44),
    Rgb(214, 39, 40),
    Rgb(148, 103, 189),
    Rgb(140, 86, 75),
    Rgb(207, 90, 170),
    Rgb(110, 110, 110),
    Rgb(160, 160, 20),
    Rgb(20, 160, 175),
];

/// The `i`-th series colour (wraps around).
pub fn series_color(i: usize) -> Rgb {
    PALETTE[i % PALETTE.len()]
}

/// Fill colour of a diagram block kind.
pub fn block_color(kind: BlockKind) -> Rgb {
    match kind {
        BlockKind::Io => Rgb(224, 224, 224),
        BlockKind::Norm => Rgb(255, 214, 102),
        BlockKind::Attention => Rgb(133, 193, 233),
        BlockKind::FeedForward => Rgb(130, 224, 170),
        BlockKind::Add => Rgb(215, 189, 226),
        BlockKind::Skip => Rgb(214, 39, 40),
    }
}

/// Viridis anchors at t = 0, 1/8, ..., 1.
const VIRIDIS: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
];

/// Viridis colour for `t` in [0, 1] (clamped; non-finite gives grey).
pub fn viridis(t: f64) -> Rgb {
    if !t.is_finite() {
        return Rgb(200, 200, 200);
    }
    let t = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f64;
    let i = (t.floor() as usize).min(VIRIDIS.len() - 2);
    let f = t - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |p: u8, q: u8| (f64::from(p) + (f64::from(q) - f64::from(p)) * f).round() as u8;
    Rgb(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Removes trailing zeros of a decimal mantissa: "2.50" -> "2.5", "1.00" -> "1".
fn trim_mantissa(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Formats `v` with `digits` significant digits in scientific form, e.g. `3.2e-8`.
fn sci(v: f64, digits: usize) -> String {
    let s = format!("{:.*e}", digits.saturating_sub(1), v);
    match s.split_once('e') {
        Some((m, e)) => format!("{}e{}", trim_mantissa(m), e),
        None => s,
    }
}

/// Formats `v` with `digits` significant digits in plain decimal form.
fn plain(v: f64, digits: usize) -> String {
    let magnitude = if v == 0.0 {
        0
    } else {
        v.abs().log10().floor() as i32
    };
    let decimals = (digits as i32 - 1 - magnitude).max(0) as usize;
    let s = trim_mantissa(&format!("{v:.decimals$}"));
    if s == "-0" { "0".to_string() } else { s }
}

/// Tick labels for an axis spanning `(lo, hi)`: as many significant digits as the tick
/// spacing needs (so a narrow range such as [0.999990, 1.000010] still reads apart),
/// scientific form for magnitudes outside [1e-3, 1e4), and `0` for ticks at zero.
pub fn ticks((lo, hi): (f64, f64), scale: Scale) -> impl Fn(&f64) -> String {
    let mag = lo.abs().max(hi.abs());
    let step = (hi - lo).abs() / 6.0;
    let digits = match scale {
        Scale::Log => 2,
        Scale::Linear if step > 0.0 && mag > 0.0 => {
            ((mag / step).log10().ceil() as i64 + 1).clamp(2, 12) as usize
        }
        Scale::Linear => 3,
    };
    move |&v: &f64| {
        if !v.is_finite() {
            String::new()
        } else if v == 0.0 || (scale == Scale::Linear && v.abs() < step * 1e-6) {
            "0".to_string()
        } else if match scale {
            Scale::Linear => !(1e-3..1e4).contains(&mag),
            Scale::Log => !(1e-3..1e4).contains(&v.abs()),
        } {
            sci(v, digits)
        } else {
            plain(v, digits)
        }
    }
}

/// A measured value as the page prints it: 4 significant digits (more where rounding to 4
/// would carry into a new leading digit), scientific outside [1e-3, 1e5), `NaN`/`inf`/`-inf`
/// for non-finite values.
///
/// ```
/// assert_eq!(norm_report::format_value(3.24159e-8), "3.242e-8");
/// assert_eq!(norm_report::format_value(12.5), "12.5");
/// assert_eq!(norm_report::format_value(0.9999612), "0.99996");
/// assert_eq!(norm_report::format_value(f64::NAN), "NaN");
/// ```
pub fn format_value(v: f64) -> String {
    let a = v.abs();
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf".to_string()
        } else {
            "-inf".to_string()
        }
    } else if v == 0.0 {
        "0".to_string()
    } else {
        // 4 significant digits, more when rounding carries into a new leading digit
        // (0.9999612 must not print as "1").
        let form = if (1e-3..1e5).contains(&a) { plain } else { sci };
        let exponent = |x: f64| x.abs().log10().floor();
        let mut s = form(v, 4);
        for digits in 4..=9 {
            s = form(v, digits);
            if s.parse::<f64>().is_ok_and(|r| exponent(r) == exponent(v)) {
                break;
            }
        }
        s
    }
}

/// A value as a tooltip shows it: the shortest text that reads back as the same f64
/// ("not finite" for NaN and ±inf, which the figure draws grey or not at all).
///
/// ```text
/// 0.1 -> "0.1", 3.0e-8 -> "3e-8", 12345678.9 -> "1.23456789e7"
/// ```
pub fn exact(v: f64) -> String {
    if !v.is_finite() {
        return "not finite".to_string();
    }
    if v == 0.0 || (1e-4..1e6).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// About `target` round tick values (1, 2 or 5 times a power of ten apart) inside
/// `(lo, hi)`.
pub fn linear_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return if lo.is_finite() { vec![lo] } else { vec![] };
    }
    let raw = span / target.max(1) as f64;
    let pow = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * pow)
        .find(|&s| s >= raw * 0.999)
        .unwrap_or(10.0 * pow);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            // Round away the float noise of k * step (0.6000000000000001 -> 0.6).
            let digits = (-step.log10().floor()).max(0.0) as i32 + 1;
            let scale = 10f64.powi(digits);
            if digits < 15 {
                (v * scale).round() / scale
            } else {
                v
            }
        })
        .collect()
}

/// A plotted value on a given scale: finite, and positive on a log axis.
pub fn plottable(v: f64, scale: Scale) -> bool {
    v.is_finite() && (scale == Scale::Linear || v > 0.0)
}

/// Most decades a log axis spans; smaller values are cut off (and not drawn).
pub const MAX_DECADES: f64 = 200.0;

/// The axis range covering `values` (non-plottable ones skipped), padded by `pad` of the
/// span on each side (in log10 space for log axes). Degenerate or empty inputs get a
/// sensible non-empty range.
pub fn axis_range(values: impl Iterator<Item = f64>, scale: Scale, pad: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|&v| plottable(v, scale)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    match scale {
        Scale::Linear => {
            if lo > hi {
                return (0.0, 1.0);
            }
            let span = hi - lo;
            if span <= f64::EPSILON * lo.abs().max(hi.abs()).max(1e-300) {
                let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
                return (lo - d, hi + d);
            }
            (lo - pad * span, hi + pad * span)
        }
        Scale::Log => {
            if lo > hi {
                return (1.0, 10.0);
            }
            // plotters' log axis needs hi/lo finite: keep at most MAX_DECADES decades.
            let (h, l) = (hi.log10(), lo.log10());
            let l = l.max(h - MAX_DECADES);
            let span = h - l;
            if span < 1e-9 {
                return (10f64.powf(l - 0.5), 10f64.powf(h + 0.5));
            }
            (10f64.powf(l - pad * span), 10f64.powf(h + pad * span))
        }
    }
}

/// Tick values for a log axis over `(lo, hi)`: `(labelled, grid-only)`. Powers of ten
/// (thinned to at most 8) when at least three fall inside the axis; otherwise 1, 2 and 5
/// times powers of ten, or 1, 2, 3 and 5 times, or every integer multiple, whichever first
/// gives three ticks or more.
pub fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    if !(lo > 0.0 && hi > lo && (hi / lo).is_finite()) {
        return (vec![], vec![]);
    }
    let (e0, e1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let within = |v: &f64| *v >= lo * (1.0 - 1e-12) && *v <= hi * (1.0 + 1e-12);
    let multiples = |ms: &[f64]| -> Vec<f64> {
        (e0..=e1)
            .flat_map(|e| ms.iter().map(move |m| m * 10f64.powi(e)))
            .filter(within)
            .collect()
    };
    let decades = multiples(&[1.0]);
    if decades.len() >= 3 {
        let k = decades.len().div_ceil(8).max(1);
        let bold: Vec<f64> = decades.iter().copied().step_by(k).collect();
        let light = if decades.len() <= 5 {
            multiples(&[2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
        } else {
            decades.iter().copied().filter(|d| !bold.contains(d)).collect()
        };
        return (bold, light);
    }
    let all = multiples(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    for ms in [&[1.0, 2.0, 5.0][..], &[1.0, 2.0, 3.0, 5.0][..]] {
        let bold = multiples(ms);
        if bold.len() >= 3 {
            return (bold, all);
        }
    }
    (all, vec![])
}

/// Position of `v` within `(lo, hi)` as a fraction, in log space for log axes.
pub fn fraction(v: f64, (lo, hi): (f64, f64), scale: Scale) -> f64 {
    match scale {
        Scale::Linear => (v - lo) / (hi - lo),
        Scale::Log => (v.log10() - lo.log10()) / (hi.log10() - lo.log10()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_values() {
        let check = |v: f64, want: &str| assert_eq!(format_value(v), want, "value {v:e}");
        check(0.0, "0");
        check(1.0, "1");
        check(12.5, "12.5");
        check(0.0012346, "0.001235");
        check(3.24159e-8, "3.242e-8");
        check(-2.0e9, "-2e9");
        check(123456.0, "1.235e5");
        check(0.99999, "0.99999");
        check(f64::NAN, "NaN");
        check(f64::NEG_INFINITY, "-inf");
        check(0.9999612, "0.99996");
        check(1.0000004, "1");
        check(3.40009e-16, "3.4e-16");
        check(-0.99996, "-0.99996");
        check(0.25000000001, "0.25");
        check(9.99996e-9, "9.99996e-9");
    }

    #[test]
    fn formats_ticks() {
        let check = |range: (f64, f64), scale: Scale, v: f64, want: &str| {
            assert_eq!(ticks(range, scale)(&v), want, "tick {v:e} on {range:?}")
        };
        check((0.0, 1.0), Scale::Linear, 0.30000000000000004, "0.3");
        check((0.0, 1.0), Scale::Linear, 1e-17, "0");
        check((0.99999, 1.00001), Scale::Linear, 0.999995, "0.999995");
        check((-2e-17, 2e-17), Scale::Linear, 1e-17, "1e-17");
        check((0.0, 3e4), Scale::Linear, 25000.0, "2.5e4");
        check((0.0, 200.0), Scale::Linear, 150.0, "150");
        check((1e-20, 1.0), Scale::Log, 1e-14, "1e-14");
        check((1e-20, 1.0), Scale::Log, 0.1, "0.1");
    }

    #[test]
    fn ranges_skip_bad_values() {
        let (lo, hi) = axis_range(
            [f64::NAN, 1.0, f64::INFINITY, 3.0].into_iter(),
            Scale::Linear,
            0.0,
        );
        assert_eq!((lo, hi), (1.0, 3.0));
        let (lo, hi) = axis_range([-1.0, 0.0, 1e-3, 1e3].into_iter(), Scale::Log, 0.0);
        assert!((lo - 1e-3).abs() < 1e-12 && (hi - 1e3).abs() < 1e-9, "{lo} {hi}");
        let (lo, hi) = axis_range([5.0, 5.0].into_iter(), Scale::Linear, 0.05);
        assert!(lo < 5.0 && hi > 5.0);
        assert_eq!(axis_range(std::iter::empty(), Scale::Log, 0.1), (1.0, 10.0));
        let (lo, hi) = axis_range([1e-300, 1e300].into_iter(), Scale::Log, 0.0);
        assert!((hi / lo).is_finite() && hi >= 1e300, "{lo} {hi}");
    }

    #[test]
    fn log_ticks_fit_the_span() {
        let (bold, _) = log_ticks(1e-20, 1.0);
        assert!(
            bold.len() <= 8 && bold.contains(&1e-20) && bold.len() >= 5,
            "{bold:?}"
        );
        let (bold, light) = log_ticks(0.03, 0.4);
        assert_eq!(bold, vec![0.05, 0.1, 0.2]);
        assert!(light.iter().any(|v| (v - 0.3).abs() < 1e-12), "{light:?}");
        let (bold, _) = log_ticks(6.0, 24.0);
        assert_eq!(bold, vec![6.0, 7.0, 8.0, 9.0, 10.0, 20.0]);
        assert_eq!(log_ticks(0.0, 1.0), (vec![], vec![]));
        let (bold, _) = log_ticks(15.0, 2500.0);
        assert_eq!(bold.len(), 7, "{bold:?}");
        let (bold, _) = log_ticks(0.008, 0.045);
        assert_eq!(bold.len(), 3, "{bold:?}");
    }

    #[test]
    fn exact_values_round_trip() {
        for v in [0.1, 3e-8, 12345678.9, -2.5, 1.0 / 3.0, 0.0] {
            assert_eq!(exact(v).parse::<f64>().unwrap(), v, "{v}");
        }
        assert_eq!(exact(3e-8), "3e-8");
        assert_eq!(exact(0.25), "0.25");
    }

    #[test]
    fn linear_ticks_are_round() {
        assert_eq!(linear_ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(linear_ticks(-3.0, 4.5, 4), vec![-2.0, 0.0, 2.0, 4.0]);
        assert_eq!(linear_ticks(2.0, 2.0, 5), vec![2.0]);
        assert!(
            linear_ticks(0.99999, 1.00001, 5)
                .iter()
                .all(|v| (0.99999..=1.00001).contains(v))
        );
        assert!(linear_ticks(0.99999, 1.00001, 5).len() >= 3);
    }

    #[test]
    fn viridis_ends() {
        assert_eq!(viridis(0.0), Rgb(68, 1, 84));
        assert_eq!(viridis(1.0), Rgb(253, 231, 37));
        assert_eq!(viridis(f64::NAN), Rgb(200, 200, 200));
    }
}
