//! Heap allocations of a training step, counted by a global allocator (so this file is
//! its own test binary with a single test): after the first step, a language-model step
//! (`loss_and_grads_into` and `AdamW::step`) allocates nothing, for every placement and
//! norm kind; and its numbers are those of the allocating forms.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ndarray::Array2;
use norm_autograd::{
    AdamW, AdamWConfig, Gradients, LanguageModel, LmCache, LmConfig, LmGrads, Module, NormKind, Placement,
    StackConfig,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Counts allocations (any thread) while [`COUNTING`] is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn note(size: usize) {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(size, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::note(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::note(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::note(new_size);
        // SAFETY: forwarded with the caller's pointer and layouts.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `(allocations, bytes)` made by `f`.
fn counted<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    ALLOCS.store(0, Ordering::SeqCst);
    BYTES.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let out = f();
    COUNTING.store(false, Ordering::SeqCst);
    (out, ALLOCS.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst))
}

fn bits(g: &impl Gradients<f32>) -> Vec<u32> {
    let mut v = Vec::new();
    g.for_each_grad(&mut |a| v.extend(a.iter().map(|x| x.to_bits())));
    v
}

#[test]
fn steps_after_the_first_allocate_nothing() {
    let (b, l, vocab) = (4, 8, 8);
    // Batches made up front (the study reuses its batch buffers too).
    let batches: Vec<(Array2<usize>, Array2<usize>)> = (0..6)
        .map(|s| {
            let x = Array2::from_shape_fn((b, l), |(i, j)| (i * 3 + j * 5 + s * 7) % vocab);
            let y = Array2::from_shape_fn((b, l), |(i, j)| (i + j * 2 + s) % vocab);
            (x, y)
        })
        .collect();
    for placement in [
        Placement::PostNorm,
        Placement::PreNorm,
        Placement::PeriNorm,
        Placement::deepnorm_for(2),
    ] {
        for norm in [NormKind::LayerNorm, NormKind::RmsNorm] {
            let mut stack = StackConfig::new(2, 16, 2, placement, norm);
            stack.block.d_ff = 32;
            let cfg = LmConfig {
                vocab,
                max_len: l,
                stack,
                embed_std: 1.0,
            };
            let mut lm = LanguageModel::<f32>::new(&cfg, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
            let mut twin = lm.clone();
            let mut opt = AdamW::new(AdamWConfig::default()).unwrap();
            let mut twin_opt = opt.clone();
            let (mut cache, mut grads) = (LmCache::default(), LmGrads::empty());
            for (step, (x, y)) in batches.iter().enumerate() {
                let ((), allocs, bytes) = counted(|| {
                    lm.loss_and_grads_into(x.view(), y.view(), &mut cache, &mut grads)
                        .unwrap();
                    opt.step(&mut lm, &grads, 1e-2).unwrap();
                });
                let what = format!("{} {} step {step}", placement.name(), norm.name());
                if step == 0 {
                    // The counter sees the first step shape its buffers.
                    assert!(allocs > 0 && bytes > 0, "{what}");
                } else if step >= 1 {
                    assert_eq!(
                        (allocs, bytes),
                        (0, 0),
                        "{what}: {allocs} allocations, {bytes} bytes"
                    );
                }
                // The allocating forms on an identical model give the same bits.
                let (loss, g) = twin.loss_and_grads(x.view(), y.view()).unwrap();
                twin_opt.step(&mut twin, &g, 1e-2).unwrap();
                assert_eq!(bits(&g), bits(&grads), "{what}");
                let mut p = Vec::new();
                lm.for_each_param(&mut |a| p.extend(a.iter().map(|v| v.to_bits())));
                let mut q = Vec::new();
                twin.visit_params(&mut |_, a| q.extend(a.iter().map(|v| v.to_bits())));
                assert_eq!(p, q, "{what}");
                let again = lm.loss_into(x.view(), y.view(), &mut cache).unwrap();
                let fresh = twin.loss(x.view(), y.view()).unwrap();
                assert_eq!(again.to_bits(), fresh.to_bits(), "{what}");
                assert!(loss.is_finite());
            }
        }
    }
}
