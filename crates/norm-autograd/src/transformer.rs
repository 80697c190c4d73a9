//! The transformer block with its norm placement as a parameter (Post-Norm, Pre-Norm,
//! Peri-LN, DeepNorm) and its norm kind as a parameter (LayerNorm, RmsNorm), and a stack of N
//! blocks with an optional final norm, whose backward reports the gradient of the
//! residual stream entering every block.

use ndarray::{Array3, ArrayRef3, ArrayViewD, ArrayViewMutD, Ix3, Zip};
use norm_core::Float;
use rand::Rng;

use crate::attention::{AttentionSaved, AttentionScratch};
use crate::ffn::{FeedForwardSaved, FeedForwardScratch};
use crate::linear::fit;
use crate::params::join;
use crate::seq::seq_layer;
use crate::{
    Activation, AttentionGrads, FeedForward, FeedForwardGrads, GradError, Gradients, Init, Module,
    MultiHeadAttention, Norm, NormCache, NormGrads, NormKind, l2_norm,
};

/// Where the norms sit relative to the residual connections.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Placement {
    /// The original Transformer and BERT: normalize after each residual addition.
    ///
    /// ```text
    /// h = Norm₁(x + Attn(x)),   y = Norm₂(h + FFN(h))
    /// ```
    PostNorm,
    /// GPT-2, LLaMA, Mistral: normalize the sublayer input; the residual stream is never
    /// normalized (a final norm usually follows the stack).
    ///
    /// ```text
    /// h = x + Attn(Norm₁(x)),   y = h + FFN(Norm₂(h))
    /// ```
    PreNorm,
    /// Peri-LN (Kim et al. 2025; Gemma 2 and 3; OLMo 2 keeps only the output norm): a norm before and after each
    /// sublayer, both on the branch; the residual stream is never normalized (a final
    /// norm usually follows the stack). Four norms per block: `norm1`, `norm2` on the
    /// sublayer inputs as in Pre-Norm, `norm1_out`, `norm2_out` on their outputs.
    ///
    /// ```text
    /// h = x + Norm₁ₒ(Attn(Norm₁(x))),   y = h + Norm₂ₒ(FFN(Norm₂(h)))
    /// ```
    PeriNorm,
    /// DeepNorm (Wang et al. 2022, "DeepNet"): Post-Norm with the residual scaled by
    /// `alpha`, and the value, output-projection and feed-forward weights initialized with
    /// their gain multiplied by `beta`.
    ///
    /// ```text
    /// h = Norm₁(α·x + Attn(x)),   y = Norm₂(α·h + FFN(h))
    /// ```
    DeepNorm {
        /// Residual scale α.
        alpha: f64,
        /// Initialization gain β.
        beta: f64,
    },
}

impl Placement {
    /// DeepNorm's constants for an `n_layers`-block encoder-only (or decoder-only) stack,
    /// from the DeepNet paper: `α = (2N)^(1/4)`, `β = (8N)^(−1/4)`.
    ///
    /// ```
    /// let p = norm_autograd::Placement::deepnorm_for(12);
    /// let norm_autograd::Placement::DeepNorm { alpha, beta } = p else { unreachable!() };
    /// assert!((alpha - 24f64.powf(0.25)).abs() < 1e-15 && (beta - 96f64.powf(-0.25)).abs() < 1e-15);
    /// ```
    pub fn deepnorm_for(n_layers: usize) -> Placement {
        let n = n_layers.max(1) as f64;
        Placement::DeepNorm {
            alpha: (2.0 * n).powf(0.25),
            beta: (8.0 * n).powf(-0.25),
        }
    }

    /// A short name (`"post-norm"`, `"pre-norm"`, `"peri-norm"`, `"deepnorm"`).
    pub fn name(self) -> &'static str {
        match self {
            Placement::PostNorm => "post-norm",
            Placement::PreNorm => "pre-norm",
            Placement::PeriNorm => "peri-norm",
            Placement::DeepNorm { .. } => "deepnorm",
        }
    }

    /// The residual scale: α for DeepNorm, 1 otherwise.
    pub fn alpha(self) -> f64 {
        match self {
            Placement::DeepNorm { alpha, .. } => alpha,
            _ => 1.0,
        }
    }

    /// Whether the residual stream passes through no norm inside a block (Pre-Norm,
    /// Peri-LN): such stacks usually end with a final norm.
    pub fn unnormalized_stream(self) -> bool {
        matches!(self, Placement::PreNorm | Placement::PeriNorm)
    }
}

/// The shape and options of a [`TransformerBlock`].
#[derive(Debug, Clone, PartialEq)]
pub struct BlockConfig {
    /// Model width D.
    pub d_model: usize,
    /// Attention heads (must divide D).
    pub n_heads: usize,
    /// Hidden width of the feed-forward network.
    pub d_ff: usize,
    /// Norm placement.
    pub placement: Placement,
    /// Norm kind of both norms (and the stack's final norm).
    pub norm: NormKind,
    /// Feed-forward activation.
    pub activation: Activation,
    /// Causal attention mask.
    pub causal: bool,
    /// Base initialization of every weight (DeepNorm multiplies the gain of the value,
    /// output and feed-forward weights by β).
    pub init: Init,
}

impl BlockConfig {
    /// A block of width `d_model` with `n_heads` heads, a `4·d_model` ReLU feed-forward,
    /// no mask, Xavier-normal init (gain 1), and the given placement and norm.
    pub fn new(d_model: usize, n_heads: usize, placement: Placement, norm: NormKind) -> Self {
        Self {
            d_model,
            n_heads,
            d_ff: 4 * d_model,
            placement,
            norm,
            activation: Activation::Relu,
            causal: false,
            init: Init::XavierNormal { gain: 1.0 },
        }
    }
}

/// One transformer block: self-attention and feed-forward sublayers with residual
/// connections and two norms (four for Peri-LN) placed according to [`Placement`].
///
/// Parameters: `attn.{q,k,v,o}.{weight,bias}`, `ffn.{lin1,lin2}.{weight,bias}`,
/// `norm1.*`, `norm2.*`, and for Peri-LN `norm1_out.*`, `norm2_out.*`.
///
/// # Example
/// ```
/// use ndarray::Array3;
/// use rand::SeedableRng;
/// use norm_autograd::{BlockConfig, NormKind, Placement, TransformerBlock};
///
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
/// let block = TransformerBlock::<f64>::new(&BlockConfig::new(8, 2, Placement::PreNorm, NormKind::RmsNorm), &mut rng)?;
/// let x = Array3::<f64>::from_shape_fn((1, 4, 8), |(_, l, d)| (l as f64 - d as f64) * 0.1);
/// let (y, cache) = block.forward(&x)?;
/// let (dx, grads) = block.backward(&cache, &y)?;
/// assert_eq!(dx.dim(), x.dim());
/// assert_eq!(grads.ffn.lin2.weight.dim(), (32, 8));
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TransformerBlock<F: Float> {
    /// Self-attention sublayer.
    pub attn: MultiHeadAttention<F>,
    /// Feed-forward sublayer.
    pub ffn: FeedForward<F>,
    /// The norm around the attention sublayer.
    pub norm1: Norm<F>,
    /// The norm around the feed-forward sublayer.
    pub norm2: Norm<F>,
    /// Peri-LN only (`None` otherwise): the norm on the attention output.
    pub norm1_out: Option<Norm<F>>,
    /// Peri-LN only (`None` otherwise): the norm on the feed-forward output.
    pub norm2_out: Option<Norm<F>>,
    /// Norm placement. Change it with [`TransformerBlock::with_placement`], which adds
    /// or drops Peri-LN's output norms to match.
    pub placement: Placement,
}

/// What [`TransformerBlock::forward`] saves, and the buffers its `_into` forms reuse.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockCache<F> {
    saved: BlockSaved<F>,
    scratch: BlockScratch<F>,
}

/// What the forward writes: the sublayers' and norms' saved halves, and its `(B, L, D)`
/// intermediates `n1` … `f2`. The backward only reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BlockSaved<F> {
    attn: AttentionSaved<F>,
    ffn: FeedForwardSaved<F>,
    norm1: NormCache<F, Ix3>,
    norm2: NormCache<F, Ix3>,
    /// Peri-LN's output norms.
    out: Option<[NormCache<F, Ix3>; 2]>,
    n1: Array3<F>,
    a: Array3<F>,
    a2: Array3<F>,
    h: Array3<F>,
    n2: Array3<F>,
    f: Array3<F>,
    f2: Array3<F>,
}

/// The backward's buffers: the sublayers' scratch and the `(B, L, D)` gradients `g0` … `g5`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BlockScratch<F> {
    attn: AttentionScratch<F>,
    ffn: FeedForwardScratch<F>,
    g: [Array3<F>; 6],
}

impl<F: Float> Default for BlockCache<F> {
    fn default() -> Self {
        Self {
            saved: BlockSaved::default(),
            scratch: BlockScratch::default(),
        }
    }
}

impl<F: Float> Default for BlockSaved<F> {
    fn default() -> Self {
        let e = || Array3::zeros((0, 0, 0));
        Self {
            attn: AttentionSaved::default(),
            ffn: FeedForwardSaved::default(),
            norm1: NormCache::empty(),
            norm2: NormCache::empty(),
            out: None,
            n1: e(),
            a: e(),
            a2: e(),
            h: e(),
            n2: e(),
            f: e(),
            f2: e(),
        }
    }
}

impl<F: Float> Default for BlockScratch<F> {
    fn default() -> Self {
        Self {
            attn: AttentionScratch::default(),
            ffn: FeedForwardScratch::default(),
            g: std::array::from_fn(|_| Array3::zeros((0, 0, 0))),
        }
    }
}

impl<F: Float> BlockGrads<F> {
    /// Empty gradients (filled by [`TransformerBlock::backward_into`]).
    pub fn empty() -> Self {
        Self {
            attn: AttentionGrads::empty(),
            ffn: FeedForwardGrads::empty(),
            norm1: NormGrads::empty(),
            norm2: NormGrads::empty(),
            norm1_out: None,
            norm2_out: None,
        }
    }
}

/// `out = a + b` elementwise (reshaped only when its shape differs).
fn add_into<F: Float>(a: &Array3<F>, b: &ArrayRef3<F>, out: &mut Array3<F>) {
    fit(out, a.raw_dim());
    Zip::from(out).and(a).and(b).for_each(|o, &a, &b| *o = a + b);
}

/// `out = alpha·a + b` elementwise, rounded as `(a·alpha) + b`.
fn scale_add_into<F: Float>(alpha: F, a: &ArrayRef3<F>, b: &Array3<F>, out: &mut Array3<F>) {
    fit(out, b.raw_dim());
    Zip::from(out)
        .and(a)
        .and(b)
        .for_each(|o, &a, &b| *o = a * alpha + b);
}

/// Gradients of a [`TransformerBlock`]'s parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockGrads<F> {
    /// Of the attention.
    pub attn: AttentionGrads<F>,
    /// Of the feed-forward network (`ffn.lin2.weight` is the "second FFN weight").
    pub ffn: FeedForwardGrads<F>,
    /// Of the first norm.
    pub norm1: NormGrads<F>,
    /// Of the second norm.
    pub norm2: NormGrads<F>,
    /// Of Peri-LN's norm on the attention output (`None` for other placements).
    pub norm1_out: Option<NormGrads<F>>,
    /// Of Peri-LN's norm on the feed-forward output (`None` for other placements).
    pub norm2_out: Option<NormGrads<F>>,
}

impl<F: Float> TransformerBlock<F> {
    /// Builds a block, drawing weights from `rng` (attention q, k, v, o, then the FFN).
    ///
    /// # Errors
    /// [`GradError::HeadsDontDivide`], [`GradError::ZeroSize`], or the errors of
    /// [`Init::sample`] (e.g. a negative DeepNorm β).
    pub fn new<R: Rng + ?Sized>(config: &BlockConfig, rng: &mut R) -> Result<Self, GradError> {
        let beta = match config.placement {
            Placement::DeepNorm { alpha, beta } => {
                if !(alpha.is_finite() && alpha > 0.0) {
                    return Err(GradError::InvalidValue {
                        what: "alpha",
                        value: alpha,
                    });
                }
                beta
            }
            _ => 1.0,
        };
        let scaled = config.init.scaled(beta);
        Self {
            attn: MultiHeadAttention::new(
                config.d_model,
                config.n_heads,
                config.causal,
                config.init,
                scaled,
                rng,
            )?,
            ffn: FeedForward::new(config.d_model, config.d_ff, config.activation, scaled, rng)?,
            norm1: Norm::new(config.norm, config.d_model)?,
            norm2: Norm::new(config.norm, config.d_model)?,
            norm1_out: None,
            norm2_out: None,
            placement: Placement::PreNorm,
        }
        .with_placement(config.placement)
    }

    /// The same block with another placement: the weights are kept; Peri-LN's output
    /// norms are added (fresh, of `norm1`'s kind: weight 1, bias 0) or dropped. Norms
    /// draw nothing at initialization, so a Peri-LN block built by [`TransformerBlock::new`]
    /// equals the Pre-Norm block from the same generator state with this applied.
    ///
    /// # Errors
    /// The errors of [`Norm::new`] (none for a block that was built).
    pub fn with_placement(mut self, placement: Placement) -> Result<Self, GradError> {
        if placement == Placement::PeriNorm {
            let (kind, d) = (self.norm1.kind(), self.norm1.dim());
            if self.norm1_out.is_none() {
                self.norm1_out = Some(Norm::new(kind, d)?);
            }
            if self.norm2_out.is_none() {
                self.norm2_out = Some(Norm::new(kind, d)?);
            }
        } else {
            self.norm1_out = None;
            self.norm2_out = None;
        }
        self.placement = placement;
        Ok(self)
    }

    /// Peri-LN's two output norms, or `None` for the other placements.
    ///
    /// # Errors
    /// [`GradError::LayerMismatch`] if the output norms do not match the placement (a
    /// Peri-LN block without them, another placement with them).
    fn out_norms(&self) -> Result<Option<[&Norm<F>; 2]>, GradError> {
        let mismatch = |problem| GradError::LayerMismatch {
            placement: self.placement.name(),
            problem,
        };
        match (self.placement, &self.norm1_out, &self.norm2_out) {
            (Placement::PeriNorm, Some(a), Some(b)) => Ok(Some([a, b])),
            (Placement::PeriNorm, _, _) => Err(mismatch("lacks an output norm (norm1_out, norm2_out)")),
            (_, None, None) => Ok(None),
            _ => Err(mismatch("has Peri-LN output norms (norm1_out, norm2_out)")),
        }
    }

    /// The forward, writing the cache's saved half only (a container keeps its parts'
    /// halves apart).
    pub(crate) fn forward_saved(
        &self,
        x: &ArrayRef3<F>,
        y: &mut Array3<F>,
        c: &mut BlockSaved<F>,
    ) -> Result<(), GradError> {
        let out_norms = self.out_norms()?;
        match self.placement {
            Placement::PreNorm | Placement::PeriNorm => {
                self.norm1.forward_into(x, &mut c.n1, &mut c.norm1)?;
                self.attn.forward_saved(&c.n1, &mut c.a, &mut c.attn)?;
                // Peri-LN: each branch output passes through its own norm before the add.
                let oc = match out_norms {
                    Some(norms) => {
                        let oc = c
                            .out
                            .get_or_insert_with(|| [NormCache::empty(), NormCache::empty()]);
                        norms[0].forward_into(&c.a, &mut c.a2, &mut oc[0])?;
                        Some((norms, oc))
                    }
                    None => {
                        c.out = None;
                        None
                    }
                };
                let branch = if oc.is_some() { &c.a2 } else { &c.a };
                add_into(branch, x, &mut c.h);
                self.norm2.forward_into(&c.h, &mut c.n2, &mut c.norm2)?;
                self.ffn.forward_saved(&c.n2, &mut c.f, &mut c.ffn)?;
                let branch = match oc {
                    Some((norms, oc)) => {
                        norms[1].forward_into(&c.f, &mut c.f2, &mut oc[1])?;
                        &c.f2
                    }
                    None => &c.f,
                };
                add_into(branch, &c.h, y);
                Ok(())
            }
            Placement::PostNorm | Placement::DeepNorm { .. } => {
                c.out = None;
                let alpha = F::from_f64_round(self.placement.alpha());
                self.attn.forward_saved(x, &mut c.a, &mut c.attn)?;
                scale_add_into(alpha, x, &c.a, &mut c.a2);
                self.norm1.forward_into(&c.a2, &mut c.h, &mut c.norm1)?;
                self.ffn.forward_saved(&c.h, &mut c.f, &mut c.ffn)?;
                scale_add_into(alpha, &c.h, &c.f, &mut c.f2);
                self.norm2.forward_into(&c.f2, y, &mut c.norm2)
            }
        }
    }
}

seq_layer!(
    TransformerBlock,
    BlockCache,
    BlockGrads,
    forward:
    /// Applies the block to `x` (`(B, L, D)`).
    ///
    /// # Errors
    /// [`GradError::ShapeMismatch`] if the last axis is not `D`.
    backward:
    /// Backward of [`forward`](Self::forward) from `dy`.
    ///
    /// ```text
    /// Pre-Norm:  dh = dy + Norm₂ᵀ(FFNᵀ(dy)),        dx = dh + Norm₁ᵀ(Attnᵀ(dh))
    /// Peri-LN:   dh = dy + Norm₂ᵀ(FFNᵀ(Norm₂ₒᵀ(dy))), dx = dh + Norm₁ᵀ(Attnᵀ(Norm₁ₒᵀ(dh)))
    /// Post/Deep: dz₂ = Norm₂ᵀ(dy), dh = α·dz₂ + FFNᵀ(dz₂),  dz₁ = Norm₁ᵀ(dh), dx = α·dz₁ + Attnᵀ(dz₁)
    /// ```
    ///
    /// # Errors
    /// [`GradError::ShapeMismatch`] if `dy` does not match the cached forward;
    /// [`GradError::CacheMismatch`] if the cache was made by a block of another placement.
);

impl<F: Float> TransformerBlock<F> {
    /// The backward reading the saved forward `c`, with the intermediate gradients in `s`.
    pub(crate) fn backward_with(
        &self,
        c: &BlockSaved<F>,
        s: &mut BlockScratch<F>,
        dy: &ArrayRef3<F>,
        dx: &mut Array3<F>,
        grads: &mut BlockGrads<F>,
    ) -> Result<(), GradError> {
        // The block output has the shape of its input, which norm1 saw (both placements).
        let shape = c.norm1.x.shape();
        if dy.shape() != shape {
            return Err(GradError::ShapeMismatch {
                what: "dy",
                expected: shape.to_vec(),
                got: dy.shape().to_vec(),
            });
        }
        let out = match (self.out_norms()?, &c.out) {
            (Some(norms), Some(_)) => Some(norms),
            (None, None) => None,
            (norms, _) => {
                let (with, without) = ("Peri-LN block", "block without output norms");
                return Err(GradError::CacheMismatch {
                    expected: if norms.is_some() { with } else { without },
                    got: if norms.is_some() { without } else { with },
                });
            }
        };
        let [g0, g1, g2, g3, g4, g5] = &mut s.g;
        match self.placement {
            Placement::PreNorm | Placement::PeriNorm => {
                // Through Peri-LN's output norm `i` (identity for Pre-Norm).
                let (oc, og) = match (out, c.out.as_ref()) {
                    (Some(norms), Some(oc)) => {
                        let og2 = grads.norm2_out.get_or_insert_with(NormGrads::empty);
                        norms[1].backward_into(&oc[1], dy, g0, og2)?;
                        (Some((norms, oc)), true)
                    }
                    _ => {
                        grads.norm1_out = None;
                        grads.norm2_out = None;
                        (None, false)
                    }
                };
                let df: &ArrayRef3<F> = if og { &*g0 } else { dy };
                self.ffn
                    .backward_with(&c.ffn, &mut s.ffn, df, g1, &mut grads.ffn)?;
                self.norm2.backward_into(&c.norm2, &*g1, g2, &mut grads.norm2)?;
                add_into(&*g2, dy, g3); // dh = dh2 + dy
                let da: &ArrayRef3<F> = match oc {
                    Some((norms, oc)) => {
                        let og0 = grads.norm1_out.get_or_insert_with(NormGrads::empty);
                        norms[0].backward_into(&oc[0], &*g3, g4, og0)?;
                        &*g4
                    }
                    None => &*g3,
                };
                self.attn
                    .backward_with(&c.attn, &mut s.attn, da, g5, &mut grads.attn)?;
                self.norm1.backward_into(&c.norm1, &*g5, g1, &mut grads.norm1)?;
                add_into(&*g1, &*g3, dx); // dx = dx1 + dh
                Ok(())
            }
            Placement::PostNorm | Placement::DeepNorm { .. } => {
                grads.norm1_out = None;
                grads.norm2_out = None;
                let alpha = F::from_f64_round(self.placement.alpha());
                self.norm2.backward_into(&c.norm2, dy, g0, &mut grads.norm2)?;
                self.ffn
                    .backward_with(&c.ffn, &mut s.ffn, &*g0, g1, &mut grads.ffn)?;
                scale_add_into(alpha, &*g0, &*g1, g2); // dh = α·dz₂ + dhf
                self.norm1.backward_into(&c.norm1, &*g2, g3, &mut grads.norm1)?;
                self.attn
                    .backward_with(&c.attn, &mut s.attn, &*g3, g4, &mut grads.attn)?;
                scale_add_into(alpha, &*g3, &*g4, dx);
                Ok(())
            }
        }
    }
}

impl<F: Float> Module<F> for TransformerBlock<F> {
    fn for_each_param(&self, f: &mut dyn FnMut(ArrayViewD<'_, F>)) {
        self.attn.for_each_param(f);
        self.ffn.for_each_param(f);
        self.norm1.for_each_param(f);
        self.norm2.for_each_param(f);
        for o in [&self.norm1_out, &self.norm2_out].into_iter().flatten() {
            o.for_each_param(f);
        }
    }

    fn for_each_param_mut(&mut self, f: &mut dyn FnMut(ArrayViewMutD<'_, F>)) {
        self.attn.for_each_param_mut(f);
        self.ffn.for_each_param_mut(f);
        self.norm1.for_each_param_mut(f);
        self.norm2.for_each_param_mut(f);
        for o in [&mut self.norm1_out, &mut self.norm2_out].into_iter().flatten() {
            o.for_each_param_mut(f);
        }
    }

    fn visit_params(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        self.attn.visit_params(&mut |n, v| f(&join("attn", n), v));
        self.ffn.visit_params(&mut |n, v| f(&join("ffn", n), v));
        self.norm1.visit_params(&mut |n, v| f(&join("norm1", n), v));
        self.norm2.visit_params(&mut |n, v| f(&join("norm2", n), v));
        if let Some(o) = &self.norm1_out {
            o.visit_params(&mut |n, v| f(&join("norm1_out", n), v));
        }
        if let Some(o) = &self.norm2_out {
            o.visit_params(&mut |n, v| f(&join("norm2_out", n), v));
        }
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, F>)) {
        self.attn.visit_params_mut(&mut |n, v| f(&join("attn", n), v));
        self.ffn.visit_params_mut(&mut |n, v| f(&join("ffn", n), v));
        self.norm1.visit_params_mut(&mut |n, v| f(&join("norm1", n), v));
        self.norm2.visit_params_mut(&mut |n, v| f(&join("norm2", n), v));
        if let Some(o) = &mut self.norm1_out {
            o.visit_params_mut(&mut |n, v| f(&join("norm1_out", n), v));
        }
        if let Some(o) = &mut self.norm2_out {
            o.visit_params_mut(&mut |n, v| f(&join("norm2_out", n), v));
        }
    }
}

impl<F: Float> Gradients<F> for BlockGrads<F> {
    fn for_each_grad(&self, f: &mut dyn FnMut(ArrayViewD<'_, F>)) {
        self.attn.for_each_grad(f);
        self.ffn.for_each_grad(f);
        self.norm1.for_each_grad(f);
        self.norm2.for_each_grad(f);
        for o in [&self.norm1_out, &self.norm2_out].into_iter().flatten() {
            o.for_each_grad(f);
        }
    }

    fn visit_grads(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        self.attn.visit_grads(&mut |n, v| f(&join("attn", n), v));
        self.ffn.visit_grads(&mut |n, v| f(&join("ffn", n), v));
        self.norm1.visit_grads(&mut |n, v| f(&join("norm1", n), v));
        self.norm2.visit_grads(&mut |n, v| f(&join("norm2", n), v));
        if let Some(o) = &self.norm1_out {
            o.visit_grads(&mut |n, v| f(&join("norm1_out", n), v));
        }
        if let Some(o) = &self.norm2_out {
            o.visit_grads(&mut |n, v| f(&join("norm2_out", n), v));
        }
    }
}

/// The shape and options of a [`TransformerStack`].
#[derive(Debug, Clone, PartialEq)]
pub struct StackConfig {
    /// Number of blocks N.
    pub n_layers: usize,
    /// Every block's configuration.
    pub block: BlockConfig,
    /// A norm (of the block's kind) after the last block, as in GPT-2 and LLaMA.
    pub final_norm: bool,
}

impl StackConfig {
    /// `n_layers` blocks of [`BlockConfig::new`]; DeepNorm placements get
    /// [`Placement::deepnorm_for`]`(n_layers)`; a final norm for Pre-Norm and Peri-LN
    /// (whose residual stream is never normalized inside a block).
    pub fn new(
        n_layers: usize,
        d_model: usize,
        n_heads: usize,
        placement: Placement,
        norm: NormKind,
    ) -> Self {
        let placement = match placement {
            Placement::DeepNorm { .. } => Placement::deepnorm_for(n_layers),
            p => p,
        };
        Self {
            n_layers,
            block: BlockConfig::new(d_model, n_heads, placement, norm),
            final_norm: placement.unnormalized_stream(),
        }
    }
}

/// N transformer blocks and an optional final norm.
///
/// Parameters: `blocks.{i}.…` (see [`TransformerBlock`]) and `final_norm.*`.
///
/// # Example
/// ```
/// use ndarray::Array3;
/// use rand::SeedableRng;
/// use norm_autograd::{NormKind, Placement, StackConfig, TransformerStack};
///
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
/// let cfg = StackConfig::new(3, 8, 2, Placement::PostNorm, NormKind::LayerNorm);
/// let stack = TransformerStack::<f64>::new(&cfg, &mut rng)?;
/// let x = Array3::<f64>::from_shape_fn((2, 5, 8), |(b, l, d)| ((b + l * d) as f64).sin());
/// let (y, cache) = stack.forward(&x)?;
/// let (_, grads) = stack.backward(&cache, &y)?;
/// assert_eq!(grads.d_residual.len(), 3);         // dL/dx entering each block
/// assert_eq!(grads.ffn2_weight_norms().len(), 3); // ‖dL/dW₂‖ per block
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TransformerStack<F: Float> {
    /// The blocks, input side first.
    pub blocks: Vec<TransformerBlock<F>>,
    /// The final norm, if any.
    pub final_norm: Option<Norm<F>>,
}

/// What [`TransformerStack::forward`] saves, and the buffers its `_into` forms reuse.
#[derive(Debug, Clone, PartialEq)]
pub struct StackCache<F> {
    saved: StackSaved<F>,
    scratch: StackScratch<F>,
}

/// What the forward writes: each block's saved half and output, and the final norm's
/// cache. The backward only reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StackSaved<F> {
    blocks: Vec<BlockSaved<F>>,
    final_norm: Option<NormCache<F, Ix3>>,
    /// Each block's output.
    outs: Vec<Array3<F>>,
}

/// The backward's buffers: each block's scratch, and the gradient entering the last
/// block (from the final norm).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StackScratch<F> {
    blocks: Vec<BlockScratch<F>>,
    g: Array3<F>,
}

impl<F: Float> Default for StackCache<F> {
    fn default() -> Self {
        Self {
            saved: StackSaved::default(),
            scratch: StackScratch::default(),
        }
    }
}

impl<F: Float> Default for StackSaved<F> {
    fn default() -> Self {
        Self {
            blocks: Vec::new(),
            final_norm: None,
            outs: Vec::new(),
        }
    }
}

impl<F: Float> Default for StackScratch<F> {
    fn default() -> Self {
        Self {
            blocks: Vec::new(),
            g: Array3::zeros((0, 0, 0)),
        }
    }
}

impl<F: Float> StackGrads<F> {
    /// Empty gradients (filled by [`TransformerStack::backward_into`]).
    pub fn empty() -> Self {
        Self {
            blocks: Vec::new(),
            final_norm: None,
            d_residual: Vec::new(),
        }
    }
}

/// Gradients of a [`TransformerStack`], plus the gradient of the residual stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StackGrads<F> {
    /// Parameter gradients per block.
    pub blocks: Vec<BlockGrads<F>>,
    /// Of the final norm, if any.
    pub final_norm: Option<NormGrads<F>>,
    /// `dL/dx_l`: the gradient with respect to the residual stream entering block `l`
    /// (`d_residual[0]` is the gradient with respect to the stack's input).
    pub d_residual: Vec<Array3<F>>,
}

impl<F: Float> StackGrads<F> {
    /// `‖dL/dW₂‖₂` per block: the Frobenius norm of the second feed-forward weight's
    /// gradient (computed in f64).
    pub fn ffn2_weight_norms(&self) -> Vec<f64> {
        self.blocks
            .iter()
            .map(|b| l2_norm(b.ffn.lin2.weight.view().into_dyn()))
            .collect()
    }

    /// `‖dL/dx_l‖₂` per block: the norm of the gradient of the residual stream entering
    /// each block.
    pub fn residual_grad_norms(&self) -> Vec<f64> {
        self.d_residual
            .iter()
            .map(|g| l2_norm(g.view().into_dyn()))
            .collect()
    }
}

impl<F: Float> TransformerStack<F> {
    /// Builds `n_layers` blocks (drawn from `rng` in order) and the final norm.
    ///
    /// # Errors
    /// [`GradError::ZeroSize`] for zero layers; the errors of [`TransformerBlock::new`].
    pub fn new<R: Rng + ?Sized>(config: &StackConfig, rng: &mut R) -> Result<Self, GradError> {
        if config.n_layers == 0 {
            return Err(GradError::ZeroSize { what: "n_layers" });
        }
        let blocks = (0..config.n_layers)
            .map(|_| TransformerBlock::new(&config.block, rng))
            .collect::<Result<Vec<_>, _>>()?;
        let final_norm = if config.final_norm {
            Some(Norm::new(config.block.norm, config.block.d_model)?)
        } else {
            None
        };
        Ok(Self { blocks, final_norm })
    }

    /// The forward, writing the cache's saved half only (a container keeps its parts'
    /// halves apart).
    pub(crate) fn forward_saved(
        &self,
        x: &ArrayRef3<F>,
        y: &mut Array3<F>,
        c: &mut StackSaved<F>,
    ) -> Result<(), GradError> {
        let n = self.blocks.len();
        c.blocks.resize_with(n, BlockSaved::default);
        c.outs.resize_with(n, || Array3::zeros((0, 0, 0)));
        for (i, (b, bc)) in self.blocks.iter().zip(c.blocks.iter_mut()).enumerate() {
            let (before, rest) = c.outs.split_at_mut(i);
            let input: &ArrayRef3<F> = match before.last() {
                Some(h) => h,
                None => x,
            };
            b.forward_saved(input, &mut rest[0], bc)?;
        }
        let last: &ArrayRef3<F> = match c.outs.last() {
            Some(h) => h,
            None => x,
        };
        match &self.final_norm {
            Some(norm) => {
                let nc = c.final_norm.get_or_insert_with(NormCache::empty);
                norm.forward_into(last, y, nc)?;
            }
            None => {
                c.final_norm = None;
                fit(y, last.raw_dim());
                y.assign(last);
            }
        }
        Ok(())
    }
}

seq_layer!(
    TransformerStack,
    StackCache,
    StackGrads,
    forward:
    /// Runs `x` (`(B, L, D)`) through every block and the final norm.
    ///
    /// # Errors
    /// [`GradError::ShapeMismatch`] if the last axis is not `D`.
    backward:
    /// Backward through the final norm and every block from `dy`; returns `dL/dx`.
    ///
    /// # Errors
    /// [`GradError::ShapeMismatch`] if `dy` or the cache do not fit this stack.
);

impl<F: Float> TransformerStack<F> {
    /// The backward reading the saved forward `c`, with the intermediate gradients in `s`.
    pub(crate) fn backward_with(
        &self,
        c: &StackSaved<F>,
        s: &mut StackScratch<F>,
        dy: &ArrayRef3<F>,
        dx: &mut Array3<F>,
        grads: &mut StackGrads<F>,
    ) -> Result<(), GradError> {
        let n = self.blocks.len();
        if c.blocks.len() != n {
            return Err(GradError::ShapeMismatch {
                what: "cache blocks",
                expected: vec![n],
                got: vec![c.blocks.len()],
            });
        }
        let from_norm = match (&self.final_norm, &c.final_norm) {
            (Some(norm), Some(nc)) => {
                let ng = grads.final_norm.get_or_insert_with(NormGrads::empty);
                norm.backward_into(nc, dy, &mut s.g, ng)?;
                true
            }
            (None, None) => {
                grads.final_norm = None;
                false
            }
            _ => {
                let name = |with: bool| {
                    if with {
                        "stack with final norm"
                    } else {
                        "stack without final norm"
                    }
                };
                return Err(GradError::CacheMismatch {
                    expected: name(self.final_norm.is_some()),
                    got: name(c.final_norm.is_some()),
                });
            }
        };
        s.blocks.resize_with(n, BlockScratch::default);
        grads.blocks.resize_with(n, BlockGrads::empty);
        grads.d_residual.resize_with(n, || Array3::zeros((0, 0, 0)));
        for i in (0..n).rev() {
            let (here, after) = grads.d_residual.split_at_mut(i + 1);
            let g: &ArrayRef3<F> = match after.first() {
                Some(g) => g,
                None if from_norm => &s.g,
                None => dy,
            };
            self.blocks[i].backward_with(
                &c.blocks[i],
                &mut s.blocks[i],
                g,
                &mut here[i],
                &mut grads.blocks[i],
            )?;
        }
        let first: &ArrayRef3<F> = match grads.d_residual.first() {
            Some(g) => g,
            None if from_norm => &s.g,
            None => dy,
        };
        fit(dx, first.raw_dim());
        dx.assign(first);
        Ok(())
    }
}

impl<F: Float> Module<F> for TransformerStack<F> {
    fn for_each_param(&self, f: &mut dyn FnMut(ArrayViewD<'_, F>)) {
        for b in &self.blocks {
            b.for_each_param(f);
        }
        if let Some(n) = &self.final_norm {
            n.for_each_param(f);
        }
    }

    fn for_each_param_mut(&mut self, f: &mut dyn FnMut(ArrayViewMutD<'_, F>)) {
        for b in &mut self.blocks {
            b.for_each_param_mut(f);
        }
        if let Some(n) = &mut self.final_norm {
            n.for_each_param_mut(f);
        }
    }

    fn visit_params(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        for (i, b) in self.blocks.iter().enumerate() {
            let p = format!("blocks.{i}");
            b.visit_params(&mut |n, v| f(&join(&p, n), v));
        }
        if let Some(n) = &self.final_norm {
            n.visit_params(&mut |name, v| f(&join("final_norm", name), v));
        }
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, F>)) {
        for (i, b) in self.blocks.iter_mut().enumerate() {
            let p = format!("blocks.{i}");
            b.visit_params_mut(&mut |n, v| f(&join(&p, n), v));
        }
        if let Some(n) = &mut self.final_norm {
            n.visit_params_mut(&mut |name, v| f(&join("final_norm", name), v));
        }
    }
}

impl<F: Float> Gradients<F> for StackGrads<F> {
    fn for_each_grad(&self, f: &mut dyn FnMut(ArrayViewD<'_, F>)) {
        for b in &self.blocks {
            b.for_each_grad(f);
        }
        if let Some(n) = &self.final_norm {
            n.for_each_grad(f);
        }
    }

    fn visit_grads(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        for (i, b) in self.blocks.iter().enumerate() {
            let p = format!("blocks.{i}");
            b.visit_grads(&mut |n, v| f(&join(&p, n), v));
        }
        if let Some(n) = &self.final_norm {
            n.visit_grads(&mut |name, v| f(&join("final_norm", name), v));
        }
    }
}
