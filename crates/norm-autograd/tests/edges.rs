//! Streamed dx at every offset from a cache line: the same bits as plain stores, and not
//! one element written outside dx. The columns of a streamed row outside its whole cache
//! lines go out with non-temporal scalar stores (16-bit ones in pairs, the first held
//! back until its neighbour is known), so a pair left unstored or a store past the row
//! would show here, on every path, for f32, f64, bf16 and f16, LayerNorm and RmsNorm.

use norm_autograd::__private::{
    BackwardInput, ForcedPath, Saved, Stores, Sweep, backward_half_slice_on, backward_slice_on,
};
use norm_autograd::GradSlices;
use norm_core::{Element, Float, Half, bf16, f16};

/// A value no dx takes here: marks untouched elements.
const GUARD: f64 = -12345.0;

/// Row lengths: shorter than a line, odd, even, a few lines.
const DIMS: [usize; 6] = [5, 31, 37, 64, 100, 258];
const ROWS: usize = 5;

fn val<E: Element>(v: f64) -> E {
    E::from_acc(E::Acc::from_f64_round(v))
}

fn bits<E: Element>(v: &[E]) -> Vec<u64> {
    v.iter().map(|e| e.to_acc().to_f64_exact().to_bits()).collect()
}

/// Values of a few units, spread over `n` elements.
fn input<E: Element>(n: usize, seed: u64) -> Vec<E> {
    (0..n)
        .map(|i| {
            let k = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
            val((k >> 40) as f64 / (1u64 << 24) as f64 * 6.0 - 3.0)
        })
        .collect()
}

/// The kernel under test: f32/f64 through `backward_slice_on`, bf16/f16 through
/// `backward_half_slice_on` (statistics and gamma in f32).
trait Storage: Element {
    fn backward(how: ForcedPath, ln: bool, d: usize, x: &[Self], dy: &[Self], dx: &mut [Self]);
}

fn float_backward<F: Float + Element<Acc = F>>(
    how: ForcedPath,
    ln: bool,
    d: usize,
    x: &[F],
    dy: &[F],
    dx: &mut [F],
) {
    let w = input::<F>(d, 3);
    let mean = vec![F::from_f64_round(0.1); ROWS];
    let r = vec![F::from_f64_round(0.7); ROWS];
    let saved = if ln {
        Saved::LayerNorm {
            mean: &mean,
            rstd: &r,
        }
    } else {
        Saved::RmsNorm { rrms: &r }
    };
    let mut dg = vec![F::from_f64_round(0.0); d];
    let mut db = dg.clone();
    let input = BackwardInput {
        weight: &w,
        eps: F::from_f64_round(1e-5),
        x,
        dy,
        saved,
    };
    let grads = GradSlices {
        dx,
        dgamma: &mut dg,
        dbeta: ln.then_some(&mut db[..]),
    };
    backward_slice_on(how, Sweep::Serial, input, grads).expect("lengths match");
}

fn half_backward<H: Half>(how: ForcedPath, ln: bool, d: usize, x: &[H], dy: &[H], dx: &mut [H]) {
    let w = input::<H>(d, 3);
    let (mean, r) = (vec![0.1f32; ROWS], vec![0.7f32; ROWS]);
    let saved = if ln {
        Saved::LayerNorm {
            mean: &mean,
            rstd: &r,
        }
    } else {
        Saved::RmsNorm { rrms: &r }
    };
    let (mut dg, mut db) = (vec![0.0f32; d], vec![0.0f32; d]);
    let input = BackwardInput {
        weight: &w,
        eps: 1e-5f32,
        x,
        dy,
        saved,
    };
    let grads = GradSlices {
        dx,
        dgamma: &mut dg,
        dbeta: ln.then_some(&mut db[..]),
    };
    backward_half_slice_on(how, Sweep::Serial, input, grads).expect("lengths match");
}

/// `Storage` for each type, through the entry point of its kind.
macro_rules! storage {
    ($via:ident: $($t:ty),*) => {$(
        impl Storage for $t {
            fn backward(how: ForcedPath, ln: bool, d: usize, x: &[Self], dy: &[Self], dx: &mut [Self]) {
                $via(how, ln, d, x, dy, dx);
            }
        }
    )*};
}
storage!(float_backward: f32, f64);
storage!(half_backward: bf16, f16);

/// dx of rows of `d` with `how`, placed `off` elements into a guarded buffer; checks
/// that no guard element changed.
fn run<E: Storage>(how: ForcedPath, ln: bool, d: usize, off: usize) -> Vec<u64> {
    let n = ROWS * d;
    let (x, dy) = (input::<E>(n, 1), input::<E>(n, 2));
    let guard = val::<E>(GUARD);
    let mut buf = vec![guard; n + 64];
    E::backward(how, ln, d, &x, &dy, &mut buf[off..off + n]);
    let g = bits(&[guard])[0];
    let outside: Vec<E> = buf[..off].iter().chain(&buf[off + n..]).copied().collect();
    assert!(
        bits(&outside).iter().all(|&v| v == g),
        "{:?} ln {ln} d {d} offset {off}: dx written outside its slice",
        how.path()
    );
    bits(&buf[off..off + n])
}

fn check<E: Storage>() {
    for how in ForcedPath::all() {
        for ln in [true, false] {
            for d in DIMS {
                let plain = run::<E>(how.with_stores(Stores::Cached), ln, d, 0);
                for off in 0..4 {
                    assert_eq!(
                        run::<E>(how.with_stores(Stores::Streaming), ln, d, off),
                        plain,
                        "{:?} ln {ln} {} d {d}: streamed dx at offset {off} differs from plain",
                        how.path(),
                        std::any::type_name::<E>()
                    );
                }
            }
        }
    }
}

#[test]
fn streamed_dx_matches_plain_at_every_offset_f32() {
    check::<f32>();
}

#[test]
fn streamed_dx_matches_plain_at_every_offset_f64() {
    check::<f64>();
}

#[test]
fn streamed_dx_matches_plain_at_every_offset_bf16() {
    check::<bf16>();
}

#[test]
fn streamed_dx_matches_plain_at_every_offset_f16() {
    check::<f16>();
}
