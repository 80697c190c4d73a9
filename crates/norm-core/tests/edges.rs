//! Streamed rows at every offset from a cache line: the same bits as plain stores, and
//! not one element written outside the output. The elements of a streamed row outside
//! its whole cache lines go out with non-temporal scalar stores (16-bit ones in pairs,
//! the first held back until its neighbour is known), so a pair left unstored or a
//! store past the row would show here, on every path, for f32, f64, bf16 and f16, plain
//! and fused (residual add + norm, separate `h`). Consecutive bf16/f16 rows of one call
//! leave the line they share to the call, which computes it whole once both rows are
//! written and streams it (`kernels::Seam`, `kernels::join`), also around rows the
//! rescue path writes with plain stores. Plain rows at every offset give the same bits
//! too: their write pass may start its vectors at the output's first vector boundary
//! (`write::vector_head`: matched weight and bias on AVX-512 from eight rows on, a lone
//! weight on AVX2), with and without a bias. A norm keeps its matched copies per
//! offset (`params::Matched`); they follow every change to its weight and bias.

use norm_core::dispatch::ForcedPath;
use norm_core::simd::Stores;
use norm_core::{Element, Float, LayerNorm, RmsNorm, bf16, f16};

/// A value no kernel output takes here (outputs are O(1)): marks untouched elements.
const GUARD: f64 = -12345.0;

/// Row lengths: shorter than a line, odd, even, a few lines.
const DIMS: [usize; 6] = [5, 31, 37, 64, 100, 258];
/// Rows per call: at least eight, so that the AVX-512 calls match their weight and bias
/// to the rows' offset (`kernels::matches`).
const ROWS: usize = 9;

fn val<E: Element>(v: f64) -> E {
    E::from_acc(E::Acc::from_f64_round(v))
}

fn bits<E: Element>(v: &[E]) -> Vec<u64> {
    v.iter().map(|e| e.to_acc().to_f64_exact().to_bits()).collect()
}

/// Inputs: each row offset by its index, with a spread of a few units.
fn input<E: Element>(n: usize, seed: u64) -> Vec<E> {
    (0..n)
        .map(|i| {
            let k = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
            val((k >> 40) as f64 / (1u64 << 24) as f64 * 6.0 - 3.0 + (i / 7) as f64 * 0.01)
        })
        .collect()
}

/// Checks that every element of `b` outside `off..off + n` still holds [`GUARD`].
fn assert_guarded<E: Element>(b: &[E], off: usize, n: usize, what: &str) {
    let g = bits(&[val::<E>(GUARD)])[0];
    let outside: Vec<E> = b[..off].iter().chain(&b[off + n..]).copied().collect();
    assert!(
        bits(&outside).iter().all(|&v| v == g),
        "{what} written outside the output"
    );
}

/// Weight and bias (if `bias`) of `d` features that differ from feature to feature, so
/// that an element computed with another feature's weight or bias shows.
fn params<E: Element>(d: usize, bias: bool) -> (Vec<E>, Option<Vec<E>>) {
    let w = (0..d).map(|j| val(0.5 + (j % 13) as f64 * 0.125)).collect();
    let b = (0..d).map(|j| val((j % 7) as f64 * 0.25 - 0.75)).collect();
    (w, bias.then_some(b))
}

/// What a forward writes: `y` (and `h` for the fused form).
#[derive(Clone, Copy, Debug)]
enum Form {
    Ln,
    Rms,
    LnAdd,
    RmsAdd,
}

/// Runs `form` with `how` on rows of `d` (with a bias if `bias`), the outputs placed
/// `off` elements into guarded buffers; returns `(y, h)` and checks that no guard
/// element changed.
fn run<E: Element>(how: ForcedPath, form: Form, d: usize, off: usize, bias: bool) -> (Vec<u64>, Vec<u64>) {
    let n = ROWS * d;
    let x = input::<E>(n, 1);
    let r0 = input::<E>(n, 2);
    let guard = val::<E>(GUARD);
    let (mut yb, mut hb) = (vec![guard; n + 64], vec![guard; n + 64]);
    let zero = E::Acc::from_f64_round(0.0);
    let (mut mean, mut rstd) = (vec![zero; ROWS], vec![zero; ROWS]);
    let mut r = r0.clone();
    let (y, h) = (&mut yb[off..off + n], &mut hb[off..off + n]);
    let eps = E::Acc::from_f64_round(1e-5);
    let (w, b) = params::<E>(d, bias);
    let ln = LayerNorm::<E>::from_weights(w.clone(), b.clone(), eps).expect("d > 0");
    let rms = RmsNorm::<E>::from_weights(w, b, eps).expect("d > 0");
    let res = match form {
        Form::Ln => how.layer_norm_slice(&ln, &x, y, &mut mean, &mut rstd),
        Form::Rms => how.rms_norm_slice(&rms, &x, y, &mut mean),
        Form::LnAdd => how.layer_norm_add_slice(&ln, &x, &mut r, Some(h), y),
        Form::RmsAdd => how.rms_norm_add_slice(&rms, &x, &mut r, Some(h), y),
    };
    res.expect("lengths match");
    for (name, b) in [("y", &yb), ("h", &hb)] {
        let what = format!("{:?} {form:?} d {d} offset {off}: {name}", how.path());
        assert_guarded(b, off, n, &what);
    }
    (bits(&yb[off..off + n]), bits(&hb[off..off + n]))
}

fn check<E: Element>() {
    for how in ForcedPath::all() {
        for form in [Form::Ln, Form::Rms, Form::LnAdd, Form::RmsAdd] {
            for (d, bias) in DIMS.into_iter().flat_map(|d| [(d, true), (d, false)]) {
                let cached = how.with_stores(Stores::Cached);
                let plain = run::<E>(cached, form, d, 0, bias);
                // Every element offset within a cache line.
                for off in 0..64 / std::mem::size_of::<E>() {
                    let what = format!(
                        "{:?} {form:?} {} d {d} bias {bias}",
                        how.path(),
                        std::any::type_name::<E>()
                    );
                    let streamed = run::<E>(how.with_stores(Stores::Streaming), form, d, off, bias);
                    assert_eq!(
                        streamed, plain,
                        "{what}: streamed at offset {off} differs from plain"
                    );
                    if off > 0 {
                        let moved = run::<E>(cached, form, d, off, bias);
                        assert_eq!(
                            moved, plain,
                            "{what}: plain at offset {off} differs from offset 0"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn streamed_rows_match_plain_at_every_offset_f32() {
    check::<f32>();
}

#[test]
fn streamed_rows_match_plain_at_every_offset_f64() {
    check::<f64>();
}

#[test]
fn streamed_rows_match_plain_at_every_offset_bf16() {
    check::<bf16>();
}

#[test]
fn streamed_rows_match_plain_at_every_offset_f16() {
    check::<f16>();
}

/// Rows the rescue path writes (NaN, infinity, squares beyond the accumulation type),
/// alone, in pairs and at both ends, between ordinary rows of `d`.
fn rescue_input<E: Element>(d: usize) -> Vec<E> {
    let huge = if std::mem::size_of::<E::Acc>() == 8 {
        1e200
    } else {
        1e30
    };
    // bf16 holds 1e30 (f16 gives infinity: also rescued).
    let kinds = [1, 0, 2, 3, 0, 0, 3, 3, 0, 1];
    let mut x: Vec<E> = Vec::new();
    for (r, kind) in kinds.into_iter().enumerate() {
        let mut row = input::<E>(d, r as u64 + 7);
        match kind {
            1 => row[d / 2] = val(f64::NAN),
            2 => row[0] = val(f64::INFINITY),
            3 => row
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = val(huge * (1.0 + (i % 5) as f64))),
            _ => {}
        }
        x.extend(row);
    }
    x
}

/// `form` (plain forms) over [`rescue_input`] with `how`, `y` placed `off` elements into
/// a guarded buffer; returns `y`'s bits and checks that no guard element changed.
fn run_rescue<E: Element>(how: ForcedPath, ln: bool, d: usize, off: usize) -> Vec<u64> {
    let x = rescue_input::<E>(d);
    let n = x.len();
    let rows = n / d;
    let guard = val::<E>(GUARD);
    let mut yb = vec![guard; n + 64];
    let zero = E::Acc::from_f64_round(0.0);
    let (mut s0, mut s1) = (vec![zero; rows], vec![zero; rows]);
    let y = &mut yb[off..off + n];
    let res = if ln {
        how.layer_norm_slice(&LayerNorm::<E>::new(d).expect("d > 0"), &x, y, &mut s0, &mut s1)
    } else {
        how.rms_norm_slice(&RmsNorm::<E>::new(d).expect("d > 0"), &x, y, &mut s0)
    };
    res.expect("lengths match");
    assert_guarded(
        &yb,
        off,
        n,
        &format!("{:?} ln {ln} d {d} offset {off}: y", how.path()),
    );
    bits(&yb[off..off + n])
}

fn check_rescue<E: Element>() {
    let per_line = 64 / std::mem::size_of::<E>();
    for how in ForcedPath::all() {
        for ln in [true, false] {
            for d in [32, 37, 64, 100, 258] {
                let plain = run_rescue::<E>(how.with_stores(Stores::Cached), ln, d, 0);
                for off in 0..per_line {
                    let streamed = run_rescue::<E>(how.with_stores(Stores::Streaming), ln, d, off);
                    assert_eq!(
                        streamed,
                        plain,
                        "{:?} ln {ln} {} d {d}: streamed at offset {off} differs from plain",
                        how.path(),
                        std::any::type_name::<E>()
                    );
                }
            }
        }
    }
}

/// Rescued rows write their part of the lines they share with the rows beside them
/// with plain stores: the other row's part, held for one streamed line, must still be
/// written, at every offset from a line, for every element type.
#[test]
fn streamed_rows_around_rescued_rows_match_plain() {
    check_rescue::<f32>();
    check_rescue::<f64>();
    check_rescue::<bf16>();
    check_rescue::<f16>();
}

/// `out`'s index whose element sits `bytes` past a cache line (`out` has a line to spare).
fn index_past(out: &[f32], bytes: usize) -> usize {
    (0..16)
        .find(|&i| (out.as_ptr() as usize + 4 * i) % 64 == bytes)
        .expect("an f32 at every multiple of 4 bytes within a line")
}

/// A norm keeps its weight and bias copied to the offset of the rows it is called on
/// (AVX-512, f32 rows of whole lines, at least eight, input and output at one offset
/// past a line: `params::Matched`). After every change to the weight or bias, and in a
/// clone changed apart from the original, its outputs equal those of a norm built
/// afresh from the same parameters, bit for bit, and rows on a line (no copies) agree
/// with rows 16 bytes past one. On CPUs without AVX-512 no copies are made and the
/// comparisons hold trivially.
#[test]
fn kept_matched_copies_follow_the_parameters() {
    let (rows, d) = (ROWS, 64);
    let n = rows * d;
    let mut xb = vec![0.0f32; n + 16];
    let mut yb = vec![0.0f32; n + 16];
    let run = |norm: &LayerNorm<f32>, mis: usize, xb: &mut [f32], yb: &mut [f32]| {
        let (xo, yo) = (index_past(xb, mis), index_past(yb, mis));
        xb[xo..xo + n].copy_from_slice(&input::<f32>(n, 7));
        norm.forward_slice(&xb[xo..xo + n], &mut yb[yo..yo + n])
            .expect("shapes match");
        bits(&yb[yo..yo + n])
    };
    let mut check = |norm: &LayerNorm<f32>, what: &str| {
        let fresh = LayerNorm::from_weights(
            norm.weight().to_vec(),
            norm.bias().map(<[f32]>::to_vec),
            norm.eps(),
        )
        .expect("valid parameters");
        let differ = |a: &[u64], b: &[u64]| a.iter().zip(b).filter(|(a, b)| a != b).count();
        let on_a_line = run(&fresh, 0, &mut xb, &mut yb);
        for mis in [16, 32, 48] {
            let got = run(norm, mis, &mut xb, &mut yb);
            let past = differ(&got, &run(&fresh, mis, &mut xb, &mut yb));
            assert_eq!(
                past, 0,
                "{what}, rows {mis} bytes past a line: {past} of {n} outputs differ"
            );
            let on = differ(&got, &on_a_line);
            assert_eq!(
                on, 0,
                "{what}, against rows on a line: {on} of {n} outputs differ"
            );
        }
    };
    let (w, b) = params::<f32>(d, true);
    let mut ln = LayerNorm::new(d).expect("d > 0").with_zero_bias();
    check(&ln, "new");
    ln.weight_mut()[3] = 2.5;
    check(&ln, "weight_mut");
    ln.bias_mut().expect("a bias")[5] = -1.0;
    check(&ln, "bias_mut");
    let mut ln = ln.with_weight(w).expect("same length");
    check(&ln, "with_weight");
    ln = ln.with_bias(b.expect("a bias")).expect("same length");
    check(&ln, "with_bias");
    ln = ln.without_bias();
    check(&ln, "without_bias");
    // A zero bias changes no value (only the sign of a zero product), so this step
    // checks the outputs, not the clearing.
    ln = ln.with_zero_bias();
    check(&ln, "with_zero_bias");
    let mut other = ln.clone();
    other.weight_mut()[0] = -3.0;
    check(&other, "a clone changed");
    check(&ln, "the original of a changed clone");
}
