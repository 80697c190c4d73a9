//! Criterion groups `alignment/*`: what it costs when the arrays do not start at a cache
//! line. Large `Vec`s come from `mmap` 16 bytes past a page (glibc), so a user's rows
//! straddle cache lines: each row's first and last partial lines are shared with the rows
//! beside it. Streamed rows write those lines with non-temporal scalar stores (`movnti`,
//! 16-bit elements in pairs); with plain stores there, every row waited once for a line
//! read from memory. Forward (LayerNorm, RmsNorm; f32 and bf16) and backward (f32) out of
//! cache, one thread, streaming stores, on the detected path and the forced AVX2 path:
//! arrays at a cache line (`at_line`) against arrays 16 bytes past one (`past_16`), side
//! by side. Throughput counts the bytes each kernel moves, so GB/s compare directly.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use norm_autograd::__private::{BackwardInput, ForcedPath, Saved, Stores, Sweep, backward_slice_on};
use norm_autograd::GradSlices;
use norm_core::{Element, Float, KernelPath, LayerNorm, RmsNorm, bf16};

const ROWS: usize = 65536;
const D: usize = 512;

/// `n` values of roughly N(0, 1) spread, at `skew` bytes past a cache line.
struct Buf<E> {
    v: Vec<E>,
    at: usize,
    n: usize,
}

impl<E: Element> Buf<E> {
    fn new(n: usize, skew: usize, seed: u32) -> Self {
        let size = std::mem::size_of::<E>();
        let v: Vec<E> = (0..n + 64 / size)
            .map(|i| {
                let u = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                E::from_acc(E::Acc::from_f64_round(
                    f64::from(u) / f64::from(1u32 << 24) * 4.0 - 2.0,
                ))
            })
            .collect();
        let mis = v.as_ptr() as usize % 64;
        let at = ((64 + skew - mis) % 64) / size;
        Buf { v, at, n }
    }
    fn get(&self) -> &[E] {
        &self.v[self.at..self.at + self.n]
    }
    fn get_mut(&mut self) -> &mut [E] {
        &mut self.v[self.at..self.at + self.n]
    }
}

/// The paths timed: the detected one and, where it is not already, forced AVX2.
fn paths() -> Vec<ForcedPath> {
    let mut p = vec![KernelPath::detected()];
    if KernelPath::detected() == KernelPath::Avx512 {
        p.push(KernelPath::Avx2Fma);
    }
    p.into_iter().filter_map(ForcedPath::new).collect()
}

const SKEWS: [(&str, usize); 2] = [("at_line", 0), ("past_16", 16)];

fn forward<E: Element>(c: &mut Criterion, ty: &str) {
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let n = ROWS * D;
    let mut g = c.benchmark_group(format!("alignment/forward_{ty}"));
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::BytesDecimal(
            (2 * n * std::mem::size_of::<E>()) as u64,
        ));
    let (ln, rms) = (
        LayerNorm::<E>::new(D).expect("d > 0"),
        RmsNorm::<E>::new(D).expect("d > 0"),
    );
    let zero = E::Acc::from_f64_round(0.0);
    let (mut s0, mut s1) = (vec![zero; ROWS], vec![zero; ROWS]);
    for (skew_name, skew) in SKEWS {
        let x = Buf::<E>::new(n, skew, 1);
        let mut y = Buf::<E>::new(n, skew, 2);
        for p in paths() {
            let p = p.with_stores(Stores::Streaming);
            let path = format!("{:?}", p.path());
            g.bench_function(BenchmarkId::new(format!("layer_norm/{path}"), skew_name), |b| {
                one.install(|| {
                    b.iter(|| {
                        p.layer_norm_slice(&ln, x.get(), y.get_mut(), &mut s0, &mut s1)
                            .expect("shapes match");
                        black_box(&y.v);
                    })
                })
            });
            g.bench_function(BenchmarkId::new(format!("rms_norm/{path}"), skew_name), |b| {
                one.install(|| {
                    b.iter(|| {
                        p.rms_norm_slice(&rms, x.get(), y.get_mut(), &mut s0)
                            .expect("shapes match");
                        black_box(&y.v);
                    })
                })
            });
        }
    }
    g.finish();
}

fn backward(c: &mut Criterion) {
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let n = ROWS * D;
    let mut g = c.benchmark_group("alignment/backward_f32");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::BytesDecimal((3 * n * 4) as u64));
    let ones = vec![1.0f32; D];
    let (mean, r) = (vec![0.0f32; ROWS], vec![1.0f32; ROWS]);
    let (mut dg, mut db) = (vec![0.0f32; D], vec![0.0f32; D]);
    for (skew_name, skew) in SKEWS {
        let x = Buf::<f32>::new(n, skew, 1);
        let dy = Buf::<f32>::new(n, skew, 3);
        let mut dx = Buf::<f32>::new(n, skew, 2);
        for p in paths() {
            let p = p.with_stores(Stores::Streaming);
            let path = format!("{:?}", p.path());
            for ln in [true, false] {
                let name = if ln { "layer_norm" } else { "rms_norm" };
                g.bench_function(BenchmarkId::new(format!("{name}/{path}"), skew_name), |b| {
                    one.install(|| {
                        b.iter(|| {
                            let saved = if ln {
                                Saved::LayerNorm {
                                    mean: &mean,
                                    rstd: &r,
                                }
                            } else {
                                Saved::RmsNorm { rrms: &r }
                            };
                            let input = BackwardInput {
                                weight: &ones,
                                eps: 1e-5,
                                x: x.get(),
                                dy: dy.get(),
                                saved,
                            };
                            let grads = GradSlices {
                                dx: dx.get_mut(),
                                dgamma: &mut dg,
                                dbeta: ln.then_some(&mut db[..]),
                            };
                            backward_slice_on(p, Sweep::Serial, input, grads).expect("shapes match");
                            black_box(&dx.v);
                        })
                    })
                });
            }
        }
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    forward::<f32>(c, "f32");
    forward::<bf16>(c, "bf16");
    backward(c);
}

criterion_group!(benches, bench);
criterion_main!(benches);
