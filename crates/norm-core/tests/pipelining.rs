//! Pipelined rows (the next row's first reduction beside this row's write pass) against
//! rows one after another, bit for bit: `simd::Pipelining::Always` and `Never` on every
//! kernel path, f32, f64, bf16 and f16, plain and fused forms, plain and streaming
//! stores, rows that take the rescue path among ordinary ones, row lengths on both sides
//! of the 8 KiB limit; and rows one after another with and without software prefetches
//! of the rows ahead (`simd::Prefetching`), likewise; and half-precision rows widened
//! once into scratch rows against widened on every pass (`simd::Widening`), pipelined
//! and one by one. Its own test binary: the settings are process-wide.

use norm_core::dispatch::ForcedPath;
use norm_core::simd::{
    Pipelining, Prefetching, Stores, Widening, set_pipelining, set_prefetching, set_widening,
};
use norm_core::{Element, Float, LayerNorm, RmsNorm, bf16, f16};

/// splitmix64, as uniform f64 in [0, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn vec<E: Element>(&mut self, n: usize, loc: f64, scale: f64) -> Vec<E> {
        (0..n)
            .map(|_| E::from_acc(E::Acc::from_f64_round(loc + scale * (2.0 * self.next() - 1.0))))
            .collect()
    }
}

/// Rows of `d`: ordinary, offset, huge and tiny (the rescue path for f32/f16), constant,
/// one with a NaN, ordinary again.
fn rows<E: Element>(rng: &mut Rng, d: usize) -> Vec<E> {
    let mut x = Vec::new();
    for (loc, scale) in [
        (0.0, 2.0),
        (100.0, 1.0),
        (0.0, 1e30),
        (0.0, 1e-30),
        (0.75, 0.0),
        (0.0, 1.0),
        (0.5, 3.0),
    ] {
        x.extend(rng.vec::<E>(d, loc, scale));
    }
    x[5 * d + d / 2] = E::from_acc(E::Acc::from_f64_round(f64::NAN));
    x
}

fn bits<E: Element>(v: &[E]) -> Vec<u64> {
    v.iter().map(|x| x.to_acc().to_f64_exact().to_bits()).collect()
}

/// Every output of the plain and fused forms of both norms on path `q`, as bits.
fn outputs<E: Element>(q: ForcedPath, d: usize, x: &[E], r: &[E], rng_seed: u64) -> Vec<u64> {
    let mut rng = Rng(rng_seed);
    let (w, b) = (rng.vec::<E>(d, 1.0, 0.5), rng.vec::<E>(d, 0.0, 0.5));
    let eps = <E::Acc as Float>::from_f64_round(1e-5);
    let ln = LayerNorm::from_weights(w.clone(), Some(b), eps).unwrap();
    let rms = RmsNorm::from_weights(w, None, eps).unwrap();
    let n = x.len();
    let zero = E::from_acc(<E::Acc as Float>::from_f64_round(0.0));
    let (mut y, mut h) = (vec![zero; n], vec![zero; n]);
    let (mut m, mut s) = (
        vec![<E::Acc as Float>::from_f64_round(0.0); n / d],
        vec![<E::Acc as Float>::from_f64_round(0.0); n / d],
    );
    let mut out = Vec::new();
    q.layer_norm_slice(&ln, x, &mut y, &mut m, &mut s).unwrap();
    out.extend(bits(&y));
    out.extend(m.iter().chain(&s).map(|v| v.to_f64_exact().to_bits()));
    q.rms_norm_slice(&rms, x, &mut y, &mut s).unwrap();
    out.extend(bits(&y));
    out.extend(s.iter().map(|v| v.to_f64_exact().to_bits()));
    let mut rr = r.to_vec();
    q.layer_norm_add_slice(&ln, x, &mut rr, Some(&mut h), &mut y)
        .unwrap();
    out.extend(bits(&h).into_iter().chain(bits(&y)));
    q.rms_norm_add_slice(&rms, x, &mut rr, None, &mut y).unwrap();
    out.extend(bits(&rr).into_iter().chain(bits(&y)));
    out
}

fn case<E: Element>(d: usize, seed: u64) {
    let mut rng = Rng(seed);
    let x = rows::<E>(&mut rng, d);
    let r = rng.vec::<E>(x.len(), -1.0, 1.0);
    for p in ForcedPath::all() {
        for stores in [Stores::Cached, Stores::Streaming] {
            let q = p.with_stores(stores);
            set_pipelining(Pipelining::Never);
            let one_by_one = outputs(q, d, &x, &r, seed);
            set_pipelining(Pipelining::Always);
            let pipelined = outputs(q, d, &x, &r, seed);
            set_pipelining(Pipelining::Auto);
            let auto = outputs(q, d, &x, &r, seed);
            let mut unfetched = Vec::new();
            for mode in [
                Prefetching::Never,
                Prefetching::Always,
                Prefetching::IntoL1,
                Prefetching::IntoL2,
            ] {
                for piping in [Pipelining::Never, Pipelining::Always] {
                    set_pipelining(piping);
                    set_prefetching(mode);
                    unfetched.push(outputs(q, d, &x, &r, seed));
                    set_pipelining(Pipelining::Auto);
                    set_prefetching(Prefetching::Auto);
                }
            }
            let mut widened = Vec::new();
            for w in [Widening::Once, Widening::EveryPass] {
                for piping in [Pipelining::Always, Pipelining::Never] {
                    set_widening(w);
                    set_pipelining(piping);
                    widened.push(outputs(q, d, &x, &r, seed));
                    set_widening(Widening::Auto);
                    set_pipelining(Pipelining::Auto);
                }
            }
            let what = format!("{} {:?} {stores:?} d={d}", std::any::type_name::<E>(), p.path());
            assert!(one_by_one == pipelined, "pipelining changed a bit: {what}");
            assert!(auto == pipelined, "the automatic choice changed a bit: {what}");
            assert!(
                unfetched.iter().all(|u| *u == one_by_one),
                "prefetching (or not) changed a bit: {what}"
            );
            assert!(
                widened.iter().all(|u| *u == one_by_one),
                "widening once (or on every pass) changed a bit: {what}"
            );
        }
    }
}

/// Lengths: vector tails, a row past one accumulator block, and 8 KiB exactly and just
/// beyond for f32 (2048, 2049) and for 16-bit types (4096, 4097).
const DIMS: [usize; 7] = [7, 17, 100, 1000, 2048, 2049, 4097];

#[test]
fn pipelined_and_prefetching_rows_equal_rows_one_after_another() {
    for (k, &d) in DIMS.iter().enumerate() {
        let seed = 40 + k as u64;
        case::<f32>(d, seed);
        case::<f64>(d, seed);
        case::<bf16>(d, seed);
        case::<f16>(d, seed);
    }
}
