//! The split every sequence layer's cache follows (attention, feed-forward, block, stack):
//! `saved`, what the forward wrote, which the backward only reads, beside `scratch`, the
//! backward's intermediate gradients, which it writes; and [`seq_layer!`], the one body
//! of those layers' four public methods over that split: `forward` and `forward_into`
//! (into the saved half), `backward` (a scratch owned by the call, the cache only
//! borrowed, so nothing the forward saved is copied) and `backward_into` (the scratch the
//! cache keeps, so repeated calls of one shape allocate nothing).

/// Writes `forward`, `forward_into`, `backward` and `backward_into` for `$layer`, whose
/// `$cache<F>` (`Default`) has the fields `saved` and `scratch` (`Default`), whose
/// `$grads<F>` has `empty()`, and which has the two bodies
/// `forward_saved(&self, x, y, saved)` and `backward_with(&self, saved, scratch, dy, dx,
/// grads)`. The attributes after `forward:` and `backward:` (each one's rustdoc: what
/// it computes and `# Errors`) go on `forward` and `backward`.
macro_rules! seq_layer {
    (
        $layer:ident,
        $cache:ident,
        $grads:ident,
        forward: $(#[$fdoc:meta])*
        backward: $(#[$bdoc:meta])*
    ) => {
        impl<F: norm_core::Float> $layer<F> {
            $(#[$fdoc])*
            pub fn forward(
                &self,
                x: &ndarray::ArrayRef3<F>,
            ) -> Result<(ndarray::Array3<F>, $cache<F>), $crate::GradError> {
                let (mut y, mut cache) = (ndarray::Array3::zeros((0, 0, 0)), $cache::default());
                self.forward_into(x, &mut y, &mut cache)?;
                Ok((y, cache))
            }

            /// [`forward`](Self::forward) into the caller's output and cache (reshaped
            /// only when the shape of `x` changes; then nothing is allocated).
            ///
            /// # Errors
            /// As [`forward`](Self::forward).
            pub fn forward_into(
                &self,
                x: &ndarray::ArrayRef3<F>,
                y: &mut ndarray::Array3<F>,
                cache: &mut $cache<F>,
            ) -> Result<(), $crate::GradError> {
                self.forward_saved(x, y, &mut cache.saved)
            }

            $(#[$bdoc])*
            pub fn backward(
                &self,
                cache: &$cache<F>,
                dy: &ndarray::ArrayRef3<F>,
            ) -> Result<(ndarray::Array3<F>, $grads<F>), $crate::GradError> {
                let (mut dx, mut grads) = (ndarray::Array3::zeros((0, 0, 0)), $grads::empty());
                let mut scratch = Default::default();
                self.backward_with(&cache.saved, &mut scratch, dy, &mut dx, &mut grads)?;
                Ok((dx, grads))
            }

            /// [`backward`](Self::backward) into the caller's `dx` and gradients; the
            /// cache's scratch buffers hold the intermediate gradients (reshaped only
            /// when a shape changes, so repeated calls allocate nothing).
            ///
            /// # Errors
            /// As [`backward`](Self::backward).
            pub fn backward_into(
                &self,
                cache: &mut $cache<F>,
                dy: &ndarray::ArrayRef3<F>,
                dx: &mut ndarray::Array3<F>,
                grads: &mut $grads<F>,
            ) -> Result<(), $crate::GradError> {
                self.backward_with(&cache.saved, &mut cache.scratch, dy, dx, grads)
            }
        }
    };
}

pub(crate) use seq_layer;
