//! Number formatting for finding statements and panel titles: significant digits, with
//! scientific notation for very small or large magnitudes. No measurement here.

/// `v` with `digits` significant digits: fixed notation for 1e-3 ≤ |v| < 1e6, otherwise
/// scientific (`3.2e-8`). NaN prints as `NaN`, infinities as `inf`/`-inf`, zero as `0`.
pub(crate) fn sig(v: f64, digits: usize) -> String {
    let digits = digits.max(1);
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    let e = v.abs().log10().floor() as i32;
    if (-3..6).contains(&e) {
        let decimals = (digits as i32 - 1 - e).max(0) as usize;
        // Rounding can carry into a new digit (9.96 -> "10.0"); that is still right.
        format!("{v:.decimals$}")
    } else {
        format!("{:.*e}", digits - 1, v)
    }
}

/// `v` with two significant digits (the default for statements).
pub(crate) fn g(v: f64) -> String {
    sig(v, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(g(3.2e-8), "3.2e-8");
        assert_eq!(g(0.7249), "0.72");
        assert_eq!(sig(std::f64::consts::FRAC_1_SQRT_2, 4), "0.7071");
        assert_eq!(sig(12.345, 3), "12.3");
        assert_eq!(sig(123456.0, 2), "123456");
        assert_eq!(sig(1234567.0, 2), "1.2e6");
        assert_eq!(g(0.0), "0");
        assert_eq!(g(f64::NAN), "NaN");
        assert_eq!(g(f64::NEG_INFINITY), "-inf");
        assert_eq!(sig(-0.00123, 2), "-0.0012");
        assert_eq!(sig(1.0, 3), "1.00");
    }
}
