//! Double-double arithmetic (an unevaluated sum `hi + lo` of two f64, ~106 bits) for the
//! exact reference values the studies compare against, e.g. the true variance of a
//! near-constant f64 row. Error-free transforms: Knuth's two-sum and an FMA two-product.

/// A value `hi + lo` with `|lo| ≤ ulp(hi)/2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Dd {
    hi: f64,
    lo: f64,
}

/// `a + b = s + e` exactly (Knuth).
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

/// `a + b = s + e` exactly, given `|a| ≥ |b|` (Dekker).
fn quick_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    (s, b - (s - a))
}

/// `a · b = p + e` exactly (one fused multiply-add).
fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    (p, a.mul_add(b, -p))
}

impl Dd {
    /// The exact value of one f64.
    pub(crate) fn from_f64(v: f64) -> Self {
        Self { hi: v, lo: 0.0 }
    }

    /// Rounded to the nearest f64.
    pub(crate) fn to_f64(self) -> f64 {
        self.hi + self.lo
    }

    /// Sum, to ~106 bits.
    pub(crate) fn add(self, o: Self) -> Self {
        let (s, e) = two_sum(self.hi, o.hi);
        let (t, f) = two_sum(self.lo, o.lo);
        let (s, e) = quick_two_sum(s, e + t);
        let (hi, lo) = quick_two_sum(s, e + f);
        Self { hi, lo }
    }

    /// Difference, to ~106 bits.
    pub(crate) fn sub(self, o: Self) -> Self {
        self.add(Self { hi: -o.hi, lo: -o.lo })
    }

    /// Product, to ~106 bits.
    pub(crate) fn mul(self, o: Self) -> Self {
        let (p, e) = two_prod(self.hi, o.hi);
        let e = e + (self.hi * o.lo + self.lo * o.hi);
        let (hi, lo) = quick_two_sum(p, e);
        Self { hi, lo }
    }

    /// Quotient by an f64, to ~106 bits.
    pub(crate) fn div_f64(self, b: f64) -> Self {
        let q1 = self.hi / b;
        let (p, e) = two_prod(q1, b);
        let r = self.sub(Self { hi: p, lo: e });
        let q2 = r.hi / b;
        let (hi, lo) = quick_two_sum(q1, q2);
        Self { hi, lo }
    }
}

/// The population variance of the f64 values in `x`, correct to ~1e-30 relative for
/// rows like 5.0 + 1e-8·z (every intermediate in double-double), rounded once to f64.
///
/// ```text
/// m = (1/n) Σ x_i;   var = (1/n) Σ (x_i − m)²      (all in double-double)
/// ```
pub(crate) fn exact_variance(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    let n = x.len() as f64;
    let sum = x.iter().fold(Dd::from_f64(0.0), |a, &v| a.add(Dd::from_f64(v)));
    let m = sum.div_f64(n);
    let ss = x.iter().fold(Dd::from_f64(0.0), |a, &v| {
        let d = Dd::from_f64(v).sub(m);
        a.add(d.mul(d))
    });
    ss.div_f64(n).to_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact variance of 5 + k_i·2^-30 from integer arithmetic.
    fn check(ks: &[i64]) {
        let x: Vec<f64> = ks.iter().map(|&k| 5.0 + k as f64 * 2f64.powi(-30)).collect();
        let n = ks.len() as i128;
        let s: i128 = ks.iter().map(|&k| i128::from(k)).sum();
        let s2: i128 = ks.iter().map(|&k| i128::from(k) * i128::from(k)).sum();
        let num = n * s2 - s * s; // var = 2^-60 · num / n²
        let exact = num as f64 / (n * n) as f64 * 2f64.powi(-60);
        let got = exact_variance(&x);
        assert!(
            ((got - exact) / exact).abs() < 1e-15,
            "{ks:?}: got {got:e}, exact {exact:e}"
        );
    }

    #[test]
    fn matches_integer_arithmetic() {
        check(&[1, 2, 3]);
        check(&[-7, 0, 7, 1000, -999, 3]);
        let ks: Vec<i64> = (0..1000).map(|i| (i * 7919 % 2001) - 1000).collect();
        check(&ks);
    }

    #[test]
    fn dd_ops_are_exact_where_f64_is_not() {
        let a = Dd::from_f64(1.0).add(Dd::from_f64(1e-30));
        assert_eq!(a.sub(Dd::from_f64(1.0)).to_f64(), 1e-30);
        let third = Dd::from_f64(1.0).div_f64(3.0);
        let back = third.mul(Dd::from_f64(3.0)).sub(Dd::from_f64(1.0));
        assert!(back.to_f64().abs() < 1e-31);
    }
}
