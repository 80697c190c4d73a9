//! `MultiHeadAttention<F>`: softmax(QKᵀ/√d_head)·V self-attention over `(B, L, D)`
//! sequences, with an optional causal mask, an output projection, and its full backward
//! (the softmax backward in the stable `p ⊙ (dp − Σ dp·p)` form).

use ndarray::{Array2, Array3, Array4, ArrayRef3, ArrayViewD, ArrayViewMutD, Ix2, Ix3, Ix4};
use norm_core::Float;
use rand::Rng;

use crate::ffn::{copy_rows_into, rows_of};
use crate::linear::fit;
use crate::params::join;
use crate::seq::seq_layer;
use crate::{GradError, Gradients, Init, Linear, LinearCache, LinearGrads, Module};

/// Multi-head self-attention.
///
/// ```text
/// Q = xW_q + b_q,  K = xW_k + b_k,  V = xW_v + b_v          (per sequence, (L, D))
/// head h:  S = Q_h K_hᵀ / √d_head  (causal: S_ij = −∞ for j > i),  P = softmax(S),  O_h = P V_h
/// y = concat_h(O_h) W_o + b_o
/// ```
///
/// Parameters: `q.weight`, `q.bias`, `k.*`, `v.*`, `o.*`.
///
/// # Example
/// ```
/// use ndarray::Array3;
/// use rand::SeedableRng;
/// use norm_autograd::{Init, MultiHeadAttention};
///
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let init = Init::XavierUniform { gain: 1.0 };
/// let attn = MultiHeadAttention::<f64>::new(8, 2, true, init, init, &mut rng)?;
/// let x = Array3::<f64>::from_shape_fn((2, 5, 8), |(b, l, d)| ((b * 40 + l * 8 + d) as f64).cos());
/// let (y, cache) = attn.forward(&x)?;
/// // Causal: the first position attends only to itself.
/// assert!((cache.probs()[[0, 0, 0, 0]] - 1.0).abs() < 1e-15);
/// let (dx, grads) = attn.backward(&cache, &y)?;
/// assert_eq!(dx.dim(), (2, 5, 8));
/// # let _ = grads;
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MultiHeadAttention<F> {
    /// Query projection `(D, D)`.
    pub q: Linear<F>,
    /// Key projection `(D, D)`.
    pub k: Linear<F>,
    /// Value projection `(D, D)`.
    pub v: Linear<F>,
    /// Output projection `(D, D)`.
    pub o: Linear<F>,
    n_heads: usize,
    causal: bool,
}

/// What [`MultiHeadAttention::forward`] saves, and the buffers its `_into` forms reuse.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionCache<F> {
    saved: AttentionSaved<F>,
    scratch: AttentionScratch<F>,
}

/// What the forward writes: the projections' caches and outputs, the probabilities, and
/// its own intermediates (the heads' outputs, the projection's output). The backward
/// only reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttentionSaved<F> {
    q_cache: LinearCache<F>,
    k_cache: LinearCache<F>,
    v_cache: LinearCache<F>,
    o_cache: LinearCache<F>,
    q: Array2<F>,
    k: Array2<F>,
    v: Array2<F>,
    probs: Array4<F>,
    concat: Array2<F>,
    y: Array2<F>,
}

/// The backward's intermediate gradients, all `(B·L, D)` but `ds` (`L·L`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttentionScratch<F> {
    dconcat: Array2<F>,
    dq: Array2<F>,
    dk: Array2<F>,
    dv: Array2<F>,
    dxq: Array2<F>,
    dxk: Array2<F>,
    dxv: Array2<F>,
    ds: Vec<F>,
}

impl<F: Float> Default for AttentionCache<F> {
    fn default() -> Self {
        Self {
            saved: AttentionSaved::default(),
            scratch: AttentionScratch::default(),
        }
    }
}

impl<F: Float> Default for AttentionSaved<F> {
    fn default() -> Self {
        let e = || Array2::zeros((0, 0));
        Self {
            q_cache: LinearCache::default(),
            k_cache: LinearCache::default(),
            v_cache: LinearCache::default(),
            o_cache: LinearCache::default(),
            q: e(),
            k: e(),
            v: e(),
            probs: Array4::zeros((0, 0, 0, 0)),
            concat: e(),
            y: e(),
        }
    }
}

impl<F: Float> Default for AttentionScratch<F> {
    fn default() -> Self {
        let e = || Array2::zeros((0, 0));
        Self {
            dconcat: e(),
            dq: e(),
            dk: e(),
            dv: e(),
            dxq: e(),
            dxk: e(),
            dxv: e(),
            ds: Vec::new(),
        }
    }
}

impl<F: Float> AttentionGrads<F> {
    /// Empty gradients (filled by [`MultiHeadAttention::backward_into`]).
    pub fn empty() -> Self {
        Self {
            q: LinearGrads::empty(),
            k: LinearGrads::empty(),
            v: LinearGrads::empty(),
            o: LinearGrads::empty(),
        }
    }
}

impl<F> AttentionCache<F> {
    /// The attention probabilities, `(B, heads, L, L)`; row `i` of a head is what
    /// position `i` attends to.
    pub fn probs(&self) -> &Array4<F> {
        &self.saved.probs
    }
}

/// Gradients of a [`MultiHeadAttention`]'s parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionGrads<F> {
    /// Of the query projection.
    pub q: LinearGrads<F>,
    /// Of the key projection.
    pub k: LinearGrads<F>,
    /// Of the value projection.
    pub v: LinearGrads<F>,
    /// Of the output projection.
    pub o: LinearGrads<F>,
}

/// The error for an array that should be in standard layout and is not (never happens:
/// every array here is freshly made).
const NOT_STANDARD: GradError = GradError::CacheMismatch {
    expected: "arrays in standard (row-major) layout",
    got: "a strided array",
};

/// The row-major slice of a standard-layout matrix.
fn std_slice<F>(a: &Array2<F>) -> Result<&[F], GradError> {
    a.as_slice().ok_or(NOT_STANDARD)
}

/// The per-(sequence, head) products of attention, as plain loops over the row-major
/// `(B·L, D)` projections: at these sizes (L and d_head in the tens) a general matrix
/// multiply spends more time packing and allocating than multiplying. Causal rows skip
/// the masked half (its probabilities are exactly 0). Every sum runs in a fixed order.
struct Heads {
    /// Row stride D.
    d: usize,
    /// Sequence length L.
    l: usize,
    /// Head width.
    dh: usize,
    causal: bool,
}

impl Heads {
    fn new(d: usize, l: usize, dh: usize, causal: bool) -> Self {
        Self { d, l, dh, causal }
    }

    /// Offset of element (row 0, column 0) of head `h` of sequence `bi`.
    fn at(&self, bi: usize, h: usize) -> usize {
        bi * self.l * self.d + h * self.dh
    }

    /// Columns `0..=i` (causal) or all `L` of row `i`.
    fn cols(&self, i: usize) -> usize {
        if self.causal { i + 1 } else { self.l }
    }

    /// Row `i` of the head at `at` in a `(B·L, D)` matrix.
    fn row<'a, F>(&self, m: &'a [F], at: usize, i: usize) -> &'a [F] {
        &m[at + i * self.d..at + i * self.d + self.dh]
    }

    /// `P = softmax(Q_h K_hᵀ · scale)` (masked entries 0) into `p` (`L × L`), and
    /// `O_h = P V_h` into the head's columns of `out`.
    fn forward<F: Float>(&self, at: usize, scale: F, [q, k, v]: [&[F]; 3], p: &mut [F], out: &mut [F]) {
        let (l, dh) = (self.l, self.dh);
        for i in 0..l {
            let qi = self.row(q, at, i);
            let n = self.cols(i);
            let pr = &mut p[i * l..(i + 1) * l];
            for (j, e) in pr[..n].iter_mut().enumerate() {
                let kj = self.row(k, at, j);
                *e = qi.iter().zip(kj).fold(F::zero(), |a, (&x, &y)| a + x * y) * scale;
            }
            let m = pr[..n].iter().fold(F::neg_infinity(), |a, &x| a.max(x));
            let mut z = F::zero();
            for e in &mut pr[..n] {
                *e = (*e - m).exp();
                z += *e;
            }
            let inv = F::one() / z;
            for e in &mut pr[..n] {
                *e *= inv;
            }
            let o = &mut out[at + i * self.d..at + i * self.d + dh];
            for (j, &pij) in pr[..n].iter().enumerate() {
                for (o, &vj) in o.iter_mut().zip(self.row(v, at, j)) {
                    *o += pij * vj;
                }
            }
        }
    }

    /// From `dO_h` (the head's columns of `dout`) and the saved `P`:
    ///
    /// ```text
    /// dP = dO_h V_hᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)) · scale,
    /// dQ_h = dS K_h,   dK_h = dSᵀ Q_h,   dV_h = Pᵀ dO_h
    /// ```
    #[allow(clippy::too_many_arguments)] // one call site; the arrays travel as two triples
    fn backward<F: Float>(
        &self,
        at: usize,
        scale: F,
        [q, k, v]: [&[F]; 3],
        p: &[F],
        dout: &[F],
        ds: &mut [F],
        [dq, dk, dv]: [&mut [F]; 3],
    ) {
        let (l, dh, d) = (self.l, self.dh, self.d);
        for i in 0..l {
            let n = self.cols(i);
            let doi = self.row(dout, at, i);
            let pr = &p[i * l..i * l + n];
            let dsr = &mut ds[i * l..i * l + n];
            let mut dot = F::zero();
            for (j, (e, &pij)) in dsr.iter_mut().zip(pr).enumerate() {
                let dp = doi
                    .iter()
                    .zip(self.row(v, at, j))
                    .fold(F::zero(), |a, (&x, &y)| a + x * y);
                *e = dp;
                dot += dp * pij;
            }
            for (e, &pij) in dsr.iter_mut().zip(pr) {
                *e = pij * (*e - dot) * scale;
            }
            for (j, &pij) in pr.iter().enumerate() {
                let dvj = &mut dv[at + j * d..at + j * d + dh];
                for (o, &g) in dvj.iter_mut().zip(doi) {
                    *o += pij * g;
                }
            }
            let dqi = &mut dq[at + i * d..at + i * d + dh];
            for (j, &s) in dsr.iter().enumerate() {
                for (o, &kj) in dqi.iter_mut().zip(self.row(k, at, j)) {
                    *o += s * kj;
                }
            }
            let qi = self.row(q, at, i);
            for (j, &s) in dsr.iter().enumerate() {
                let dkj = &mut dk[at + j * d..at + j * d + dh];
                for (o, &x) in dkj.iter_mut().zip(qi) {
                    *o += s * x;
                }
            }
        }
    }
}

impl<F: Float> MultiHeadAttention<F> {
    /// Attention over `d_model` features with `n_heads` heads (bias in every projection).
    /// `qk_init` initializes the query and key projections, `vo_init` the value and output
    /// projections (DeepNorm scales only the latter).
    ///
    /// # Errors
    /// [`GradError::ZeroSize`] for a zero width or head count;
    /// [`GradError::HeadsDontDivide`] if `n_heads` does not divide `d_model`; the errors of
    /// [`Init::sample`].
    pub fn new<R: Rng + ?Sized>(
        d_model: usize,
        n_heads: usize,
        causal: bool,
        qk_init: Init,
        vo_init: Init,
        rng: &mut R,
    ) -> Result<Self, GradError> {
        if d_model == 0 {
            return Err(GradError::ZeroSize { what: "d_model" });
        }
        if n_heads == 0 {
            return Err(GradError::ZeroSize { what: "n_heads" });
        }
        if !d_model.is_multiple_of(n_heads) {
            return Err(GradError::HeadsDontDivide { d_model, n_heads });
        }
        Ok(Self {
            q: Linear::new(d_model, d_model, true, qk_init, rng)?,
            k: Linear::new(d_model, d_model, true, qk_init, rng)?,
            v: Linear::new(d_model, d_model, true, vo_init, rng)?,
            o: Linear::new(d_model, d_model, true, vo_init, rng)?,
            n_heads,
            causal,
        })
    }

    /// Model width.
    pub fn d_model(&self) -> usize {
        self.q.in_dim()
    }

    /// Number of heads.
    pub fn n_heads(&self) -> usize {
        self.n_heads
    }

    /// Whether position `i` attends only to positions `≤ i`.
    pub fn causal(&self) -> bool {
        self.causal
    }

    fn check_x(&self, what: &'static str, x: &ArrayRef3<F>) -> Result<(), GradError> {
        let (b, l, d) = x.dim();
        if d != self.d_model() {
            return Err(GradError::ShapeMismatch {
                what,
                expected: vec![b, l, self.d_model()],
                got: vec![b, l, d],
            });
        }
        Ok(())
    }

    /// The forward, writing the cache's saved half only (a container keeps its parts'
    /// halves apart).
    pub(crate) fn forward_saved(
        &self,
        x: &ArrayRef3<F>,
        y: &mut Array3<F>,
        c: &mut AttentionSaved<F>,
    ) -> Result<(), GradError> {
        self.check_x("x", x)?;
        let (b, l, d) = x.dim();
        {
            let x2 = rows_of(x)?;
            self.q.forward_into(&x2, &mut c.q, &mut c.q_cache)?;
            self.k.forward_into(&x2, &mut c.k, &mut c.k_cache)?;
            self.v.forward_into(&x2, &mut c.v, &mut c.v_cache)?;
        }
        let dh = d / self.n_heads;
        let scale = F::one() / F::from_usize(dh).unwrap_or_else(F::one).sqrt();
        fit(&mut c.probs, Ix4(b, self.n_heads, l, l));
        c.probs.fill(F::zero());
        fit(&mut c.concat, Ix2(b * l, d));
        c.concat.fill(F::zero());
        {
            let heads = Heads::new(d, l, dh, self.causal);
            let (q, k, v) = (std_slice(&c.q)?, std_slice(&c.k)?, std_slice(&c.v)?);
            let concat = c.concat.as_slice_mut().ok_or(NOT_STANDARD)?;
            let probs = c.probs.as_slice_mut().ok_or(NOT_STANDARD)?;
            for (bh, p) in probs.chunks_exact_mut(l * l).enumerate() {
                let (bi, h) = (bh / self.n_heads, bh % self.n_heads);
                let at = heads.at(bi, h);
                heads.forward(at, scale, [q, k, v], p, concat);
            }
        }
        self.o.forward_into(&c.concat, &mut c.y, &mut c.o_cache)?;
        copy_rows_into(&c.y, b, l, y)
    }
}

seq_layer!(
    MultiHeadAttention,
    AttentionCache,
    AttentionGrads,
    forward:
    /// Self-attention of each sequence in `x` (`(B, L, D)`).
    ///
    /// # Errors
    /// [`GradError::ShapeMismatch`] if the last axis is not `d_model`.
    backward:
    /// Backward of [`forward`](Self::forward) from `dy` (`(B, L, D)`).
    ///
    /// ```text
    /// dV_h = Pᵀ dO_h,  dP = dO_h V_hᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),
    /// dQ_h = dS K_h / √d_head,  dK_h = dSᵀ Q_h / √d_head,  dx = Σ_{q,k,v} dproj · Wᵀ
    /// ```
    ///
    /// # Errors
    /// [`GradError::ShapeMismatch`] if `dy` does not match the cached forward.
);

impl<F: Float> MultiHeadAttention<F> {
    /// The backward reading the saved forward `c`, with the intermediate gradients in `s`.
    pub(crate) fn backward_with(
        &self,
        c: &AttentionSaved<F>,
        s: &mut AttentionScratch<F>,
        dy: &ArrayRef3<F>,
        dx: &mut Array3<F>,
        grads: &mut AttentionGrads<F>,
    ) -> Result<(), GradError> {
        let (b, nh, l, _) = c.probs.dim();
        let d = self.d_model();
        if nh != self.n_heads || c.q.dim() != (b * l, d) {
            return Err(GradError::CacheMismatch {
                expected: "attention of this width and head count",
                got: "attention of another shape",
            });
        }
        if dy.dim() != (b, l, d) {
            return Err(GradError::ShapeMismatch {
                what: "dy",
                expected: vec![b, l, d],
                got: dy.shape().to_vec(),
            });
        }
        self.o
            .backward_into(&c.o_cache, &rows_of(dy)?, &mut s.dconcat, &mut grads.o)?;
        let dh = d / self.n_heads;
        let scale = F::one() / F::from_usize(dh).unwrap_or_else(F::one).sqrt();
        for g in [&mut s.dq, &mut s.dk, &mut s.dv] {
            fit(g, Ix2(b * l, d));
            g.fill(F::zero());
        }
        s.ds.clear();
        s.ds.resize(l * l, F::zero());
        {
            let heads = Heads::new(d, l, dh, self.causal);
            let saved = [std_slice(&c.q)?, std_slice(&c.k)?, std_slice(&c.v)?];
            let dconcat = std_slice(&s.dconcat)?;
            let probs = c.probs.as_slice().ok_or(NOT_STANDARD)?;
            let (dq, dk, dv) = (
                s.dq.as_slice_mut().ok_or(NOT_STANDARD)?,
                s.dk.as_slice_mut().ok_or(NOT_STANDARD)?,
                s.dv.as_slice_mut().ok_or(NOT_STANDARD)?,
            );
            // One scratch row pair, reused by every (sequence, head).
            for (bh, p) in probs.chunks_exact(l * l).enumerate() {
                let (bi, h) = (bh / self.n_heads, bh % self.n_heads);
                let at = heads.at(bi, h);
                heads.backward(
                    at,
                    scale,
                    saved,
                    p,
                    dconcat,
                    &mut s.ds,
                    [&mut *dq, &mut *dk, &mut *dv],
                );
            }
        }
        self.q
            .backward_into(&c.q_cache, &s.dq, &mut s.dxq, &mut grads.q)?;
        self.k
            .backward_into(&c.k_cache, &s.dk, &mut s.dxk, &mut grads.k)?;
        self.v
            .backward_into(&c.v_cache, &s.dv, &mut s.dxv, &mut grads.v)?;
        // dx = (dxq + dxk) + dxv, in that order.
        fit(dx, Ix3(b, l, d));
        let out = dx.as_slice_mut().ok_or(NOT_STANDARD)?;
        let (a, k, v) = (std_slice(&s.dxq)?, std_slice(&s.dxk)?, std_slice(&s.dxv)?);
        for (((o, &a), &k), &v) in out.iter_mut().zip(a).zip(k).zip(v) {
            *o = a + k + v;
        }
        Ok(())
    }
}

impl<F: Float> Module<F> for MultiHeadAttention<F> {
    fn for_each_param(&self, f: &mut dyn FnMut(ArrayViewD<'_, F>)) {
        for l in [&self.q, &self.k, &self.v, &self.o] {
            l.for_each_param(f);
        }
    }

    fn for_each_param_mut(&mut self, f: &mut dyn FnMut(ArrayViewMutD<'_, F>)) {
        for l in [&mut self.q, &mut self.k, &mut self.v, &mut self.o] {
            l.for_each_param_mut(f);
        }
    }

    fn visit_params(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        for (name, lin) in [("q", &self.q), ("k", &self.k), ("v", &self.v), ("o", &self.o)] {
            lin.visit_params(&mut |n, v| f(&join(name, n), v));
        }
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, F>)) {
        for (name, lin) in [
            ("q", &mut self.q),
            ("k", &mut self.k),
            ("v", &mut self.v),
            ("o", &mut self.o),
        ] {
            lin.visit_params_mut(&mut |n, v| f(&join(name, n), v));
        }
    }
}

impl<F: Float> Gradients<F> for AttentionGrads<F> {
    fn for_each_grad(&self, f: &mut dyn FnMut(ArrayViewD<'_, F>)) {
        for g in [&self.q, &self.k, &self.v, &self.o] {
            g.for_each_grad(f);
        }
    }

    fn visit_grads(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        for (name, g) in [("q", &self.q), ("k", &self.k), ("v", &self.v), ("o", &self.o)] {
            g.visit_grads(&mut |n, v| f(&join(name, n), v));
        }
    }
}
