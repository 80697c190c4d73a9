//! Shared test machinery: a tiny deterministic generator, a `Norm` wrapper that drives
//! both kinds through every public entry point, array layouts, and the `check_*` helpers
//! the data-driven tests call. No assertions about specific inputs live here.

use ndarray::{ArrayD, ArrayViewD, IxDyn, ShapeBuilder, Slice};
use norm_core::dispatch::ForcedPath;
use norm_core::reference::{layer_norm_reference, rms_norm_reference};
use norm_core::{Float, KernelPath, LayerNorm, RmsNorm};

/// xorshift64* — small, deterministic, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Scramble so that small seeds give unrelated streams; never zero.
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `n` values `loc + scale · N(0, 1)`, rounded to `F`.
    pub fn normals<F: Float>(&mut self, n: usize, loc: f64, scale: f64) -> Vec<F> {
        (0..n)
            .map(|_| F::from_f64_round(loc + scale * self.normal()))
            .collect()
    }
}

/// Either norm, built from the same parameters, so one check covers both kinds.
#[derive(Debug, Clone)]
pub enum Norm<F: Float> {
    Ln(LayerNorm<F>),
    Rms(RmsNorm<F>),
}

/// Which norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ln,
    Rms,
}

pub const KINDS: [Kind; 2] = [Kind::Ln, Kind::Rms];

impl<F: Float> Norm<F> {
    pub fn build(kind: Kind, weight: Vec<F>, bias: Option<Vec<F>>, eps: F) -> Self {
        match kind {
            Kind::Ln => Self::Ln(LayerNorm::from_weights(weight, bias, eps).expect("valid params")),
            Kind::Rms => Self::Rms(RmsNorm::from_weights(weight, bias, eps).expect("valid params")),
        }
    }

    /// Weight of ones, no bias.
    pub fn plain(kind: Kind, d: usize, eps: F) -> Self {
        Self::build(kind, vec![F::one(); d], None, eps)
    }

    /// Random weight around 1 and (optionally) a random bias.
    pub fn random(kind: Kind, d: usize, eps: F, with_bias: bool, rng: &mut Rng) -> Self {
        let w = rng.normals(d, 1.0, 0.5);
        let b = with_bias.then(|| rng.normals(d, 0.0, 1.0));
        Self::build(kind, w, b, eps)
    }

    pub fn kind(&self) -> Kind {
        match self {
            Self::Ln(_) => Kind::Ln,
            Self::Rms(_) => Kind::Rms,
        }
    }

    pub fn dim(&self) -> usize {
        match self {
            Self::Ln(n) => n.dim(),
            Self::Rms(n) => n.dim(),
        }
    }

    pub fn weight(&self) -> &[F] {
        match self {
            Self::Ln(n) => n.weight(),
            Self::Rms(n) => n.weight(),
        }
    }

    pub fn bias(&self) -> Option<&[F]> {
        match self {
            Self::Ln(n) => n.bias(),
            Self::Rms(n) => n.bias(),
        }
    }

    pub fn eps(&self) -> F {
        match self {
            Self::Ln(n) => n.eps(),
            Self::Rms(n) => n.eps(),
        }
    }

    pub fn forward(&self, x: &ArrayViewD<'_, F>) -> ArrayD<F> {
        match self {
            Self::Ln(n) => n.forward(x),
            Self::Rms(n) => n.forward(x),
        }
        .expect("forward")
    }

    /// Forward into an output of the given layout; returns the output.
    pub fn forward_into(&self, x: &ArrayViewD<'_, F>, layout: OutLayout) -> ArrayD<F> {
        let shape = x.shape().to_vec();
        match layout {
            OutLayout::Standard => {
                let mut out = ArrayD::from_elem(IxDyn(&shape), F::nan());
                self.forward_into_raw(x, &mut out.view_mut());
                out
            }
            OutLayout::Fortran => {
                let mut out = ArrayD::from_elem(IxDyn(&shape).f(), F::nan());
                self.forward_into_raw(x, &mut out.view_mut());
                out
            }
            OutLayout::StepTwo => {
                let big: Vec<usize> = shape.iter().map(|&n| 2 * n).collect();
                let mut buf = ArrayD::from_elem(IxDyn(&big), F::nan());
                let mut out = buf.slice_each_axis_mut(|_| Slice::new(0, None, 2));
                self.forward_into_raw(x, &mut out);
                out.to_owned()
            }
        }
    }

    fn forward_into_raw(&self, x: &ArrayViewD<'_, F>, out: &mut ndarray::ArrayViewMutD<'_, F>) {
        match self {
            Self::Ln(n) => n.forward_into(x, out),
            Self::Rms(n) => n.forward_into(x, out),
        }
        .expect("forward_into");
    }

    /// Forward with statistics: output and the stats (LN: mean, rstd; RMS: rrms).
    pub fn forward_with_stats(&self, x: &ArrayViewD<'_, F>) -> (ArrayD<F>, Vec<ArrayD<F>>) {
        match self {
            Self::Ln(n) => {
                let (y, s) = n.forward_with_stats(x).expect("forward_with_stats");
                (y, vec![s.mean, s.rstd])
            }
            Self::Rms(n) => {
                let (y, s) = n.forward_with_stats(x).expect("forward_with_stats");
                (y, vec![s.rrms])
            }
        }
    }

    pub fn forward_slice(&self, x: &[F]) -> Vec<F> {
        let mut out = vec![F::nan(); x.len()];
        match self {
            Self::Ln(n) => n.forward_slice(x, &mut out),
            Self::Rms(n) => n.forward_slice(x, &mut out),
        }
        .expect("forward_slice");
        out
    }

    pub fn forward_slice_with_stats(&self, x: &[F]) -> (Vec<F>, Vec<Vec<F>>) {
        let rows = x.len() / self.dim();
        let mut out = vec![F::nan(); x.len()];
        match self {
            Self::Ln(n) => {
                let (mut m, mut r) = (vec![F::nan(); rows], vec![F::nan(); rows]);
                n.forward_slice_with_stats(x, &mut out, &mut m, &mut r)
                    .expect("forward_slice_with_stats");
                (out, vec![m, r])
            }
            Self::Rms(n) => {
                let mut r = vec![F::nan(); rows];
                n.forward_slice_with_stats(x, &mut out, &mut r)
                    .expect("forward_slice_with_stats");
                (out, vec![r])
            }
        }
    }

    /// [`Norm::forward_slice_with_stats`] on a forced kernel path (portable, AVX2, AVX-512).
    pub fn forward_slice_on(&self, path: ForcedPath, x: &[F]) -> (Vec<F>, Vec<Vec<F>>) {
        let rows = x.len() / self.dim();
        let mut out = vec![F::nan(); x.len()];
        match self {
            Self::Ln(n) => {
                let (mut m, mut r) = (vec![F::nan(); rows], vec![F::nan(); rows]);
                path.layer_norm_slice(n, x, &mut out, &mut m, &mut r)
                    .expect("layer_norm_slice");
                (out, vec![m, r])
            }
            Self::Rms(n) => {
                let mut r = vec![F::nan(); rows];
                path.rms_norm_slice(n, x, &mut out, &mut r)
                    .expect("rms_norm_slice");
                (out, vec![r])
            }
        }
    }

    /// The f64 reference on row-major `x`: output and stats (same order as above).
    pub fn reference(&self, x: &[F]) -> (Vec<f64>, Vec<Vec<f64>>) {
        match self.kind() {
            Kind::Ln => {
                let (y, m, r) = layer_norm_reference(x, self.weight(), self.bias(), self.eps())
                    .expect("reference inputs are whole rows");
                (y, vec![m, r])
            }
            Kind::Rms => {
                let (y, r) = rms_norm_reference(x, self.weight(), self.bias(), self.eps())
                    .expect("reference inputs are whole rows");
                (y, vec![r])
            }
        }
    }
}

/// How an input array is laid out in memory (its logical shape is always the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Row-major, contiguous.
    Standard,
    /// Column-major: a transposed view; the last axis is strided unless rows ≤ 1.
    Transposed,
    /// Every axis sliced with step 2 out of a twice-as-large array.
    StepTwo,
    /// Only the outer axes sliced with step 2: each row contiguous, the array not.
    OuterStepTwo,
    /// The last axis reversed (negative stride).
    Reversed,
}

pub const LAYOUTS: [Layout; 5] = [
    Layout::Standard,
    Layout::Transposed,
    Layout::StepTwo,
    Layout::OuterStepTwo,
    Layout::Reversed,
];

/// How the caller's output array is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutLayout {
    Standard,
    Fortran,
    StepTwo,
}

pub const OUT_LAYOUTS: [OutLayout; 3] = [OutLayout::Standard, OutLayout::Fortran, OutLayout::StepTwo];

/// An owned buffer holding `values` (row-major logical order) in `layout`; call
/// [`Laid::view`] for the view with the logical shape.
#[derive(Debug, Clone)]
pub struct Laid<F> {
    buf: ArrayD<F>,
    layout: Layout,
}

impl<F: Float> Laid<F> {
    pub fn new(shape: &[usize], values: &[F], layout: Layout) -> Self {
        let logical = ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).expect("shape matches values");
        let buf = match layout {
            Layout::Standard => logical,
            Layout::Transposed => {
                let mut f = ArrayD::from_elem(IxDyn(shape).f(), F::nan());
                f.assign(&logical);
                f
            }
            Layout::StepTwo | Layout::OuterStepTwo => {
                let last = shape.len() - 1;
                let big: Vec<usize> = shape
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| {
                        if layout == Layout::StepTwo || i < last {
                            2 * n
                        } else {
                            n
                        }
                    })
                    .collect();
                let mut b = ArrayD::from_elem(IxDyn(&big), F::nan());
                b.slice_each_axis_mut(|ax| step_for(layout, ax.axis.index(), last))
                    .assign(&logical);
                b
            }
            Layout::Reversed => {
                let last = ndarray::Axis(shape.len() - 1);
                let mut b = logical;
                b.invert_axis(last);
                let mut owned = b.as_standard_layout().into_owned();
                owned.invert_axis(last);
                owned
            }
        };
        Self { buf, layout }
    }

    pub fn view(&self) -> ArrayViewD<'_, F> {
        match self.layout {
            Layout::StepTwo | Layout::OuterStepTwo => {
                let last = self.buf.ndim() - 1;
                self.buf
                    .slice_each_axis(|ax| step_for(self.layout, ax.axis.index(), last))
            }
            _ => self.buf.view(),
        }
    }
}

fn step_for(layout: Layout, axis: usize, last: usize) -> Slice {
    if layout == Layout::StepTwo || axis < last {
        Slice::new(0, None, 2)
    } else {
        Slice::from(..)
    }
}

/// Row-major copy of any view.
pub fn flat<F: Float>(x: &ArrayViewD<'_, F>) -> Vec<F> {
    x.iter().copied().collect()
}

/// Bitwise equality, NaN == NaN (same payload not required).
pub fn same_bits<F: Float>(a: F, b: F) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

pub fn assert_same<F: Float>(what: &str, a: &[F], b: &[F]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        assert!(same_bits(x, y), "{what}: element {i} differs: {x} vs {y}");
    }
}

/// `|fast − ref| ≤ tol · scale_i` elementwise, with NaN allowed only where both are NaN.
pub fn assert_close<F: Float>(
    what: &str,
    fast: &[F],
    reference: &[f64],
    scale: impl Fn(usize) -> f64,
    tol: f64,
) {
    assert_eq!(fast.len(), reference.len(), "{what}: lengths differ");
    for (i, (&f, &r)) in fast.iter().zip(reference).enumerate() {
        let f = f.to_f64_exact();
        if r.is_nan() || f.is_nan() {
            assert!(r.is_nan() && f.is_nan(), "{what}[{i}]: fast {f} vs reference {r}");
            continue;
        }
        // Beyond F's range (e.g. 1/std of a row of f32 subnormals): F saturates to ±inf.
        let r_in_f = F::from_f64_round(r).to_f64_exact();
        if r_in_f.is_infinite() || f.is_infinite() {
            assert_eq!(
                f, r_in_f,
                "{what}[{i}]: fast {f} vs reference {r} (as F: {r_in_f})"
            );
            continue;
        }
        let bound = tol * scale(i);
        assert!(
            (f - r).abs() <= bound,
            "{what}[{i}]: fast {f} vs reference {r}: |err| {} > {bound}",
            (f - r).abs()
        );
    }
}

/// Relative tolerance for the fast kernel in units of the type's epsilon, growing gently
/// with the row length (the f32 lanes each sum about `d/16` terms).
pub fn tol_for<F: Float>(d: usize) -> f64 {
    let eps = F::epsilon().to_f64_exact();
    eps * (32.0 + 2.0 * (d as f64).sqrt())
}

/// The full check of one input: every entry point agrees bit for bit with every other
/// (allocating, into any output layout, with stats, plain slice on a contiguous copy),
/// and all match the f64 reference within `tol` (relative to each output's scale).
pub fn check_against_reference<F: Float>(norm: &Norm<F>, x: &ArrayViewD<'_, F>, tol: f64) {
    let d = norm.dim();
    let shape = x.shape().to_vec();
    let xs = flat(x);
    let (yr, sr) = norm.reference(&xs);

    let y = norm.forward(x);
    assert_eq!(y.shape(), &shape[..]);
    let y = flat(&y.view());

    // Scale of output i: |w|·(1 + |normalized|) + |b|, so the bound is relative.
    let w = norm.weight();
    let b = norm.bias();
    let scale = |i: usize| {
        let j = i % d;
        let bj = b.map_or(0.0, |b| b[j].to_f64_exact());
        let wj = w[j].to_f64_exact();
        let nj = if wj == 0.0 { 0.0 } else { (yr[i] - bj) / wj };
        wj.abs() * (1.0 + nj.abs()) + bj.abs()
    };
    assert_close(
        &format!("{:?} forward {shape:?}", norm.kind()),
        &y,
        &yr,
        scale,
        tol,
    );

    for layout in OUT_LAYOUTS {
        let yo = norm.forward_into(x, layout);
        assert_same(&format!("forward_into {layout:?}"), &flat(&yo.view()), &y);
    }
    let ys = norm.forward_slice(&xs);
    assert_same("forward_slice on the contiguous copy", &ys, &y);

    let (yw, stats) = norm.forward_with_stats(x);
    assert_same("forward_with_stats output", &flat(&yw.view()), &y);
    let (ysw, slice_stats) = norm.forward_slice_with_stats(&xs);
    assert_same("forward_slice_with_stats output", &ysw, &y);
    let stat_shape = &shape[..shape.len() - 1];
    for (k, (s, ss)) in stats.iter().zip(&slice_stats).enumerate() {
        assert_eq!(s.shape(), stat_shape, "stats {k} shape");
        assert_same(&format!("stats {k}: ndarray vs slice"), &flat(&s.view()), ss);
    }
    check_stats(norm, &slice_stats, &sr, tol);

    // Every kernel path this CPU has (the public API runs the detected one) matches the
    // reference too; the detected path is the public API, bit for bit.
    for path in ForcedPath::all() {
        let (yp, sp) = norm.forward_slice_on(path, &xs);
        let what = format!("{:?} on {:?} {shape:?}", norm.kind(), path.path());
        if path.path() == KernelPath::detected() {
            assert_same(&what, &yp, &y);
        }
        assert_close(&what, &yp, &yr, scale, tol);
        check_stats(norm, &sp, &sr, tol);
    }
}

/// Statistics vs the reference: LN mean relative to |mean| + std, the reciprocals relative.
pub fn check_stats<F: Float>(norm: &Norm<F>, fast: &[Vec<F>], reference: &[Vec<f64>], tol: f64) {
    assert_eq!(fast.len(), reference.len());
    match norm.kind() {
        Kind::Ln => {
            let (m, r) = (&reference[0], &reference[1]);
            assert_close("mean", &fast[0], m, |i| m[i].abs() + 1.0 / r[i], tol);
            assert_close("rstd", &fast[1], r, |i| r[i].abs(), tol);
        }
        Kind::Rms => {
            let r = &reference[0];
            assert_close("rrms", &fast[0], r, |i| r[i].abs(), tol);
        }
    }
}
