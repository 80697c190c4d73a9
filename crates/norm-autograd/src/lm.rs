//! A small causal decoder-only language model built from the existing blocks: a learned
//! token embedding plus fixed sinusoidal positions ([`Embedding`]), a causal
//! [`TransformerStack`] of any placement and norm kind, an untied linear output head, and
//! token-level softmax cross-entropy ([`LanguageModel`]). Optimizers live in `optim.rs`.

use ndarray::{Array2, Array3, ArrayRef3, ArrayView2, ArrayViewD, ArrayViewMutD, Ix3};
use norm_core::Float;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::ffn::{copy_rows_into, rows_of};
use crate::linear::fit;
use crate::loss::softmax_cross_entropy_into;
use crate::params::join;
use crate::transformer::{StackSaved, StackScratch};
use crate::{
    GradError, Gradients, Init, Linear, LinearCache, LinearGrads, Module, StackConfig, StackGrads,
    TransformerStack, l2_norm,
};

/// Token embedding (learned, `(V, D)`) plus sinusoidal positions (fixed, not learned).
///
/// ```text
/// x[b, l, :] = E[tok[b, l], :] + P[l, :]
/// P[l, 2i] = sin(l / 10000^(2i/D)),   P[l, 2i+1] = cos(l / 10000^(2i/D))
/// dE[v, :] = Σ_{(b, l): tok[b, l] = v} dx[b, l, :]        (summed in row-major order)
/// ```
///
/// Parameter: `table`.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding<F> {
    table: Array2<F>,
    positions: Array2<F>,
}

/// Gradient of an [`Embedding`]'s table.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingGrads<F> {
    /// dL/dE, `(V, D)`.
    pub table: Array2<F>,
}

/// The sinusoidal position table `(max_len, d)` of Vaswani et al. (2017).
fn sinusoid<F: Float>(max_len: usize, d: usize) -> Array2<F> {
    Array2::from_shape_fn((max_len, d), |(l, j)| {
        let i2 = (j - j % 2) as f64;
        let angle = l as f64 / 10000f64.powf(i2 / d as f64);
        F::from_f64_round(if j % 2 == 0 { angle.sin() } else { angle.cos() })
    })
}

impl<F: Float> Embedding<F> {
    /// A `vocab × d_model` table drawn from `N(0, std²)` and positions up to `max_len`.
    ///
    /// # Errors
    /// [`GradError::ZeroSize`] for a zero size; [`GradError::InvalidValue`] for a
    /// negative or non-finite `std`.
    pub fn new<R: Rng + ?Sized>(
        vocab: usize,
        d_model: usize,
        max_len: usize,
        std: f64,
        rng: &mut R,
    ) -> Result<Self, GradError> {
        for (what, n) in [("vocab", vocab), ("d_model", d_model), ("max_len", max_len)] {
            if n == 0 {
                return Err(GradError::ZeroSize { what });
            }
        }
        if !(std.is_finite() && std >= 0.0) {
            return Err(GradError::InvalidValue {
                what: "embedding std",
                value: std,
            });
        }
        let table = Array2::from_shape_simple_fn((vocab, d_model), || {
            let z: f64 = StandardNormal.sample(rng);
            F::from_f64_round(std * z)
        });
        Ok(Self {
            table,
            positions: sinusoid(max_len, d_model),
        })
    }

    /// Vocabulary size V.
    pub fn vocab(&self) -> usize {
        self.table.nrows()
    }

    /// Width D.
    pub fn d_model(&self) -> usize {
        self.table.ncols()
    }

    /// Longest sequence the position table covers.
    pub fn max_len(&self) -> usize {
        self.positions.nrows()
    }

    /// The token table `(V, D)`.
    pub fn table(&self) -> &Array2<F> {
        &self.table
    }

    fn check(&self, tokens: ArrayView2<'_, usize>) -> Result<(), GradError> {
        let (b, l) = tokens.dim();
        if b == 0 || l == 0 {
            return Err(GradError::ZeroSize { what: "tokens" });
        }
        if l > self.max_len() {
            return Err(GradError::ShapeMismatch {
                what: "tokens (sequence longer than max_len)",
                expected: vec![b, self.max_len()],
                got: vec![b, l],
            });
        }
        let v = self.vocab();
        if let Some((row, &class)) = tokens.iter().enumerate().find(|&(_, &t)| t >= v) {
            return Err(GradError::ClassOutOfRange {
                row,
                class,
                classes: v,
            });
        }
        Ok(())
    }

    /// `(B, L)` token ids → `(B, L, D)` vectors.
    ///
    /// # Errors
    /// [`GradError::ZeroSize`] for no tokens, [`GradError::ShapeMismatch`] for `L >
    /// max_len`, [`GradError::ClassOutOfRange`] for a token `≥ V`.
    pub fn forward(&self, tokens: ArrayView2<'_, usize>) -> Result<Array3<F>, GradError> {
        let mut x = Array3::zeros((0, 0, 0));
        self.forward_into(tokens, &mut x)?;
        Ok(x)
    }

    /// [`forward`](Self::forward) into the caller's `x` (reshaped only when its shape
    /// differs).
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    pub fn forward_into(&self, tokens: ArrayView2<'_, usize>, x: &mut Array3<F>) -> Result<(), GradError> {
        self.check(tokens)?;
        let (b, l) = tokens.dim();
        fit(x, Ix3(b, l, self.d_model()));
        for ((bi, li), &t) in tokens.indexed_iter() {
            let e = self.table.row(t);
            let p = self.positions.row(li);
            for ((o, &e), &p) in x.slice_mut(ndarray::s![bi, li, ..]).iter_mut().zip(e).zip(p) {
                *o = e + p;
            }
        }
        Ok(())
    }

    /// Scatter-adds `dx` (`(B, L, D)`) into the rows of the table its tokens picked.
    ///
    /// # Errors
    /// As [`forward`](Self::forward); [`GradError::ShapeMismatch`] if `dx` is not `(B, L, D)`.
    pub fn backward(
        &self,
        tokens: ArrayView2<'_, usize>,
        dx: &ArrayRef3<F>,
    ) -> Result<EmbeddingGrads<F>, GradError> {
        let mut grads = EmbeddingGrads {
            table: Array2::zeros((0, 0)),
        };
        self.backward_into(tokens, dx, &mut grads)?;
        Ok(grads)
    }

    /// [`backward`](Self::backward) into the caller's gradients (reshaped only when their
    /// shape differs).
    ///
    /// # Errors
    /// As [`backward`](Self::backward).
    pub fn backward_into(
        &self,
        tokens: ArrayView2<'_, usize>,
        dx: &ArrayRef3<F>,
        grads: &mut EmbeddingGrads<F>,
    ) -> Result<(), GradError> {
        self.check(tokens)?;
        let (b, l) = tokens.dim();
        if dx.dim() != (b, l, self.d_model()) {
            return Err(GradError::ShapeMismatch {
                what: "dx",
                expected: vec![b, l, self.d_model()],
                got: dx.shape().to_vec(),
            });
        }
        let table = &mut grads.table;
        fit(table, self.table.raw_dim());
        table.fill(F::zero());
        for ((bi, li), &t) in tokens.indexed_iter() {
            let mut row = table.row_mut(t);
            row += &dx.slice(ndarray::s![bi, li, ..]);
        }
        Ok(())
    }
}

impl<F: Float> Module<F> for Embedding<F> {
    fn visit_params(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        f("table", self.table.view().into_dyn());
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, F>)) {
        f("table", self.table.view_mut().into_dyn());
    }
}

impl<F: Float> Gradients<F> for EmbeddingGrads<F> {
    fn visit_grads(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        f("table", self.table.view().into_dyn());
    }
}

/// The shape of a [`LanguageModel`].
#[derive(Debug, Clone, PartialEq)]
pub struct LmConfig {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Longest sequence (size of the position table).
    pub max_len: usize,
    /// The transformer stack (its blocks are made causal by [`LanguageModel::new`]).
    pub stack: StackConfig,
    /// Standard deviation of the token embedding's entries.
    pub embed_std: f64,
}

/// A causal decoder-only language model.
///
/// ```text
/// x = Embedding(tokens)               (learned tokens + sinusoidal positions)
/// h = Stack(x)                        (causal; Pre-Norm stacks end with a final norm)
/// z = h · W_out                       (untied head, (D, V), no bias)
/// L = mean over the B·L positions of −log softmax(z)[target]
/// ```
///
/// Parameters: `embedding.table`, `stack.…` (see [`TransformerStack`]), `head.weight`.
/// The head is untied from the embedding (so every parameter has one gradient path) and
/// drawn Xavier-normal.
///
/// # Example
/// ```
/// use ndarray::Array2;
/// use rand::SeedableRng;
/// use norm_autograd::{LanguageModel, LmConfig, NormKind, Placement, StackConfig};
///
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
/// let cfg = LmConfig {
///     vocab: 7,
///     max_len: 5,
///     stack: StackConfig::new(2, 8, 2, Placement::PreNorm, NormKind::RmsNorm),
///     embed_std: 1.0,
/// };
/// let lm = LanguageModel::<f64>::new(&cfg, &mut rng)?;
/// let inputs = Array2::from_shape_fn((2, 5), |(b, l)| (b + 2 * l) % 7);
/// let targets = Array2::from_shape_fn((2, 5), |(b, l)| (b + 2 * l + 1) % 7);
/// let (loss, grads) = lm.loss_and_grads(inputs.view(), targets.view())?;
/// assert!(loss > 0.0 && grads.block_grad_norms().len() == 2);
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LanguageModel<F: Float> {
    /// Token embedding and positions.
    pub embedding: Embedding<F>,
    /// The causal transformer stack.
    pub stack: TransformerStack<F>,
    /// The untied output head `(D, V)`.
    pub head: Linear<F>,
}

/// Gradients of a [`LanguageModel`].
#[derive(Debug, Clone, PartialEq)]
pub struct LmGrads<F> {
    /// Of the embedding table.
    pub embedding: EmbeddingGrads<F>,
    /// Of the stack (with the residual-stream gradients).
    pub stack: StackGrads<F>,
    /// Of the head.
    pub head: LinearGrads<F>,
}

impl<F: Float> LmGrads<F> {
    /// `‖g‖₂` over every parameter gradient of the model (in f64).
    pub fn global_norm(&self) -> f64 {
        let mut s = 0.0;
        self.visit_grads(&mut |_, g| s += l2_norm(g).powi(2));
        s.sqrt()
    }

    /// `‖g‖₂` over all parameters of each block, input side first (in f64).
    pub fn block_grad_norms(&self) -> Vec<f64> {
        self.stack
            .blocks
            .iter()
            .map(|b| {
                let mut s = 0.0;
                b.visit_grads(&mut |_, g| s += l2_norm(g).powi(2));
                s.sqrt()
            })
            .collect()
    }
}

/// What [`LanguageModel::forward`] saves, and the buffers the `_into` forms reuse: with
/// one cache and one [`LmGrads`] kept across steps, a training step allocates nothing
/// after the first (see [`LanguageModel::loss_and_grads_into`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LmCache<F> {
    saved: LmSaved<F>,
    scratch: LmScratch<F>,
}

/// What the forward (and the loss) writes: the tokens, the stack's saved half, the head's
/// cache, the embedded input, the stack output, the logits, the targets as a row-major
/// list and the loss's `dz`. The backward only reads it.
#[derive(Debug, Clone, PartialEq)]
struct LmSaved<F> {
    tokens: Array2<usize>,
    stack: StackSaved<F>,
    head: LinearCache<F>,
    x: Array3<F>,
    h: Array3<F>,
    z: Array2<F>,
    targets: Vec<usize>,
    dz: Array2<F>,
}

/// The backward's buffers: the stack's scratch, `dh` as `(B·L, D)` and as `(B, L, D)`,
/// and `dx`.
#[derive(Debug, Clone, PartialEq)]
struct LmScratch<F> {
    stack: StackScratch<F>,
    dh: Array2<F>,
    dh3: Array3<F>,
    dx: Array3<F>,
}

impl<F: Float> Default for LmCache<F> {
    /// An empty cache, shaped by the first forward that uses it.
    fn default() -> Self {
        let (e2, e3) = (|| Array2::zeros((0, 0)), || Array3::zeros((0, 0, 0)));
        Self {
            saved: LmSaved {
                tokens: Array2::zeros((0, 0)),
                stack: StackSaved::default(),
                head: LinearCache::default(),
                x: e3(),
                h: e3(),
                z: e2(),
                targets: Vec::new(),
                dz: e2(),
            },
            scratch: LmScratch::default(),
        }
    }
}

impl<F: Float> Default for LmScratch<F> {
    fn default() -> Self {
        Self {
            stack: StackScratch::default(),
            dh: Array2::zeros((0, 0)),
            dh3: Array3::zeros((0, 0, 0)),
            dx: Array3::zeros((0, 0, 0)),
        }
    }
}

impl<F: Float> LmCache<F> {
    /// The logits of the last forward, `(B·L, V)`.
    pub fn logits(&self) -> &Array2<F> {
        &self.saved.z
    }
}

impl<F: Float> LmGrads<F> {
    /// Empty gradients, shaped by the first [`LanguageModel::loss_and_grads_into`].
    pub fn empty() -> Self {
        Self {
            embedding: EmbeddingGrads {
                table: Array2::zeros((0, 0)),
            },
            stack: StackGrads::empty(),
            head: LinearGrads::empty(),
        }
    }
}

impl<F: Float> LanguageModel<F> {
    /// Builds the model, drawing (in order) the embedding, the stack and the head.
    ///
    /// # Errors
    /// The errors of [`Embedding::new`], [`TransformerStack::new`] and [`Init::sample`].
    pub fn new<R: Rng + ?Sized>(config: &LmConfig, rng: &mut R) -> Result<Self, GradError> {
        let d = config.stack.block.d_model;
        let embedding = Embedding::new(config.vocab, d, config.max_len, config.embed_std, rng)?;
        let mut stack_cfg = config.stack.clone();
        stack_cfg.block.causal = true;
        let stack = TransformerStack::new(&stack_cfg, rng)?;
        let head = Linear::new(d, config.vocab, false, Init::XavierNormal { gain: 1.0 }, rng)?;
        Ok(Self {
            embedding,
            stack,
            head,
        })
    }

    /// Logits `(B·L, V)` (row `b·L + l` predicts the token after position `l` of sequence `b`).
    ///
    /// # Errors
    /// As [`Embedding::forward`].
    pub fn forward(&self, tokens: ArrayView2<'_, usize>) -> Result<(Array2<F>, LmCache<F>), GradError> {
        let mut cache = LmCache::default();
        self.forward_into(tokens, &mut cache)?;
        let z = std::mem::replace(&mut cache.saved.z, Array2::zeros((0, 0)));
        Ok((z, cache))
    }

    /// [`forward`](Self::forward) into `cache`, whose buffers are reshaped only when the
    /// batch shape changes; the logits are [`LmCache::logits`].
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    pub fn forward_into(
        &self,
        tokens: ArrayView2<'_, usize>,
        cache: &mut LmCache<F>,
    ) -> Result<(), GradError> {
        let c = &mut cache.saved;
        self.embedding.forward_into(tokens, &mut c.x)?;
        fit(&mut c.tokens, tokens.raw_dim());
        c.tokens.assign(&tokens);
        self.stack.forward_saved(&c.x, &mut c.h, &mut c.stack)?;
        self.head.forward_into(&rows_of(&c.h)?, &mut c.z, &mut c.head)
    }

    fn check_targets(
        &self,
        inputs: ArrayView2<'_, usize>,
        targets: ArrayView2<'_, usize>,
    ) -> Result<(), GradError> {
        if inputs.dim() != targets.dim() {
            return Err(GradError::ShapeMismatch {
                what: "targets",
                expected: inputs.shape().to_vec(),
                got: targets.shape().to_vec(),
            });
        }
        Ok(())
    }

    /// The mean token cross-entropy of predicting `targets` from `inputs` (both `(B, L)`).
    ///
    /// # Errors
    /// As [`forward`](Self::forward); [`GradError::ShapeMismatch`] if the shapes differ;
    /// [`GradError::ClassOutOfRange`] for a target `≥ V`.
    pub fn loss(
        &self,
        inputs: ArrayView2<'_, usize>,
        targets: ArrayView2<'_, usize>,
    ) -> Result<F, GradError> {
        self.loss_into(inputs, targets, &mut LmCache::default())
    }

    /// [`loss`](Self::loss) with the caller's cache (nothing is allocated once it has
    /// this batch's shape).
    ///
    /// # Errors
    /// As [`loss`](Self::loss).
    pub fn loss_into(
        &self,
        inputs: ArrayView2<'_, usize>,
        targets: ArrayView2<'_, usize>,
        cache: &mut LmCache<F>,
    ) -> Result<F, GradError> {
        self.check_targets(inputs, targets)?;
        self.forward_into(inputs, cache)?;
        let c = &mut cache.saved;
        c.targets.clear();
        c.targets.extend(targets.iter().copied());
        softmax_cross_entropy_into(&c.z, &c.targets, &mut c.dz)
    }

    /// The loss and the gradient of every parameter.
    ///
    /// ```text
    /// dz = (softmax(z) − onehot(t)) / (B·L),  dh = dz · W_outᵀ,  dx = Stackᵀ(dh),  dE = scatter(dx)
    /// ```
    ///
    /// # Errors
    /// As [`loss`](Self::loss).
    pub fn loss_and_grads(
        &self,
        inputs: ArrayView2<'_, usize>,
        targets: ArrayView2<'_, usize>,
    ) -> Result<(F, LmGrads<F>), GradError> {
        let mut grads = LmGrads::empty();
        let loss = self.loss_and_grads_into(inputs, targets, &mut LmCache::default(), &mut grads)?;
        Ok((loss, grads))
    }

    /// [`loss_and_grads`](Self::loss_and_grads) into the caller's cache and gradients.
    /// Kept across steps of one batch shape, they make a step allocate nothing after
    /// the first: every layer writes into buffers the cache or the gradients already
    /// hold, and the matrix products need no packing buffer.
    ///
    /// # Errors
    /// As [`loss`](Self::loss).
    pub fn loss_and_grads_into(
        &self,
        inputs: ArrayView2<'_, usize>,
        targets: ArrayView2<'_, usize>,
        cache: &mut LmCache<F>,
        grads: &mut LmGrads<F>,
    ) -> Result<F, GradError> {
        let loss = self.loss_into(inputs, targets, cache)?;
        let (c, scratch) = (&cache.saved, &mut cache.scratch);
        self.backward_from(c, &c.dz, scratch, grads)?;
        Ok(loss)
    }

    /// Backward from `dz = dL/dlogits` (`(B·L, V)`).
    ///
    /// # Errors
    /// [`GradError::ShapeMismatch`] if `dz` does not match the cached forward.
    pub fn backward(&self, cache: &LmCache<F>, dz: &Array2<F>) -> Result<LmGrads<F>, GradError> {
        let mut grads = LmGrads::empty();
        self.backward_from(&cache.saved, dz, &mut LmScratch::default(), &mut grads)?;
        Ok(grads)
    }

    /// Backward from `dz` through the saved forward `c`, with the intermediate gradients
    /// in `s`.
    fn backward_from(
        &self,
        c: &LmSaved<F>,
        dz: &Array2<F>,
        s: &mut LmScratch<F>,
        grads: &mut LmGrads<F>,
    ) -> Result<(), GradError> {
        let (b, l) = c.tokens.dim();
        self.head.backward_into(&c.head, dz, &mut s.dh, &mut grads.head)?;
        copy_rows_into(&s.dh, b, l, &mut s.dh3)?;
        self.stack
            .backward_with(&c.stack, &mut s.stack, &s.dh3, &mut s.dx, &mut grads.stack)?;
        self.embedding
            .backward_into(c.tokens.view(), &s.dx, &mut grads.embedding)
    }
}

impl<F: Float> Module<F> for LanguageModel<F> {
    fn for_each_param(&self, f: &mut dyn FnMut(ArrayViewD<'_, F>)) {
        self.embedding.for_each_param(f);
        self.stack.for_each_param(f);
        self.head.for_each_param(f);
    }

    fn for_each_param_mut(&mut self, f: &mut dyn FnMut(ArrayViewMutD<'_, F>)) {
        self.embedding.for_each_param_mut(f);
        self.stack.for_each_param_mut(f);
        self.head.for_each_param_mut(f);
    }

    fn visit_params(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        self.embedding
            .visit_params(&mut |n, v| f(&join("embedding", n), v));
        self.stack.visit_params(&mut |n, v| f(&join("stack", n), v));
        self.head.visit_params(&mut |n, v| f(&join("head", n), v));
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, F>)) {
        self.embedding
            .visit_params_mut(&mut |n, v| f(&join("embedding", n), v));
        self.stack.visit_params_mut(&mut |n, v| f(&join("stack", n), v));
        self.head.visit_params_mut(&mut |n, v| f(&join("head", n), v));
    }
}

impl<F: Float> Gradients<F> for LmGrads<F> {
    fn for_each_grad(&self, f: &mut dyn FnMut(ArrayViewD<'_, F>)) {
        self.embedding.for_each_grad(f);
        self.stack.for_each_grad(f);
        self.head.for_each_grad(f);
    }

    fn visit_grads(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        self.embedding
            .visit_grads(&mut |n, v| f(&join("embedding", n), v));
        self.stack.visit_grads(&mut |n, v| f(&join("stack", n), v));
        self.head.visit_grads(&mut |n, v| f(&join("head", n), v));
    }
}
