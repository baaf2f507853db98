//! Training throughput of the reference CNN on our ops, one thread, against PyTorch when present.
//!
//! Model: 1x28x28 -> conv3x3(16, pad 1) relu maxpool2 -> conv3x3(32, pad 1) relu maxpool2
//! -> dense 10 (dfdx matmul), softmax cross-entropy, Adam, batch 64, random data.
//! Run with `cargo bench --bench cnn_throughput`; `-- --seconds S` changes the timing window.
//! dfdx's buffer cache is on, as a trainer should have it; `NAS_BENCH_NO_CACHE=1` measures
//! without it.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use dfdx::prelude::*;
use nas::nn::ops::{conv2d, pool2d, Conv2dGeom, Pool2dGeom, PoolKind};

const BATCH: usize = 64;
const CLASSES: usize = 10;

/// A parameter with its Adam moments.
struct Param<S: Shape> {
    value: Tensor<S, f32, Cpu>,
    m1: <Cpu as Storage<f32>>::Vec,
    m2: <Cpu as Storage<f32>>::Vec,
}

impl<S: Shape> Param<S> {
    fn new(dev: &Cpu, value: Tensor<S, f32, Cpu>) -> Self {
        let len = value.shape().num_elements();
        let m1 = dev.try_alloc_len(len).expect("allocate Adam moment");
        let m2 = dev.try_alloc_len(len).expect("allocate Adam moment");
        Param { value, m1, m2 }
    }

    fn step(&mut self, adam: &AdamConfig, t: i32, grads: &mut Gradients<f32, Cpu>) {
        let g = grads.get_or_alloc_mut(&self.value).expect("gradient");
        adam.try_update(t, &mut self.value, &mut self.m1, &mut self.m2, g)
            .expect("Adam update");
    }
}

/// Kaiming-uniform-like initialisation, as PyTorch's default layers use.
fn init<S: Shape>(dev: &Cpu, shape: S, fan_in: usize) -> Tensor<S, f32, Cpu> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    dev.sample_like(&shape, rand_distr::Uniform::new(-bound, bound))
}

struct Cnn {
    g1: Conv2dGeom,
    p1: Pool2dGeom,
    g2: Conv2dGeom,
    p2: Pool2dGeom,
    w1: Param<(usize, usize)>,
    b1: Param<(usize,)>,
    w2: Param<(usize, usize)>,
    b2: Param<(usize,)>,
    w3: Param<(usize, usize)>,
    b3: Param<(usize,)>,
}

fn conv3x3(in_c: usize, size: usize, out_c: usize) -> Conv2dGeom {
    Conv2dGeom {
        in_c,
        in_h: size,
        in_w: size,
        out_c,
        kh: 3,
        kw: 3,
        stride_h: 1,
        stride_w: 1,
        pad_h: 1,
        pad_w: 1,
        groups: 1,
    }
}

fn maxpool2(c: usize, size: usize) -> Pool2dGeom {
    Pool2dGeom {
        c,
        h: size,
        w: size,
        kh: 2,
        kw: 2,
        stride_h: 2,
        stride_w: 2,
        pad_h: 0,
        pad_w: 0,
        ceil: false,
    }
}

impl Cnn {
    fn new(dev: &Cpu) -> Self {
        let (g1, g2) = (conv3x3(1, 28, 16), conv3x3(16, 14, 32));
        for g in [&g1, &g2] {
            g.check().expect("reference geometry is valid");
        }
        let flat = 32 * 7 * 7;
        Cnn {
            g1,
            p1: maxpool2(16, 28),
            g2,
            p2: maxpool2(32, 14),
            w1: Param::new(dev, init(dev, g1.weight_shape(), 9)),
            b1: Param::new(dev, init(dev, (16,), 9)),
            w2: Param::new(dev, init(dev, g2.weight_shape(), 16 * 9)),
            b2: Param::new(dev, init(dev, (32,), 16 * 9)),
            w3: Param::new(dev, init(dev, (flat, CLASSES), flat)),
            b3: Param::new(dev, init(dev, (CLASSES,), flat)),
        }
    }

    fn train_step(
        &mut self,
        adam: &AdamConfig,
        t: i32,
        x: &Tensor<(usize, usize), f32, Cpu>,
        y: &Tensor<(usize, usize), f32, Cpu>,
    ) {
        let n = x.shape().0;
        let h = conv2d(
            x.retaped::<OwnedTape<f32, Cpu>>(),
            &self.w1.value,
            Some(&self.b1.value),
            &self.g1,
        )
        .relu();
        let h = pool2d(h, PoolKind::Max, &self.p1);
        let h = conv2d(h, &self.w2.value, Some(&self.b2.value), &self.g2).relu();
        let h = pool2d(h, PoolKind::Max, &self.p2);
        let logits = h.matmul(self.w3.value.retaped::<OwnedTape<f32, Cpu>>())
            + self
                .b3
                .value
                .retaped::<OwnedTape<f32, Cpu>>()
                .broadcast_like::<_, Axis<0>>(&(n, CLASSES));
        let loss = cross_entropy_with_logits_loss(logits, y.clone());
        let mut grads = loss.backward();
        self.w1.step(adam, t, &mut grads);
        self.b1.step(adam, t, &mut grads);
        self.w2.step(adam, t, &mut grads);
        self.b2.step(adam, t, &mut grads);
        self.w3.step(adam, t, &mut grads);
        self.b3.step(adam, t, &mut grads);
    }
}

/// Trains for about `window` after a warm-up and returns samples per second.
fn ours(window: Duration) -> f64 {
    let dev = Cpu::seed_from_u64(0);
    // Recycle tensor buffers between steps (the `fast-alloc` feature we build dfdx with): without
    // it every step gets its activations and gradients as fresh pages from the system allocator.
    if std::env::var_os("NAS_BENCH_NO_CACHE").is_none() {
        dev.enable_cache();
    }
    let mut net = Cnn::new(&dev);
    let adam = AdamConfig::default();
    let batches: Vec<_> = (0..8)
        .map(|b| {
            let x: Tensor<(usize, usize), f32, Cpu> =
                dev.sample_like(&(BATCH, 28 * 28), rand_distr::StandardNormal);
            let mut onehot = vec![0.0f32; BATCH * CLASSES];
            for (i, row) in onehot.chunks_exact_mut(CLASSES).enumerate() {
                row[(i * 7 + b * 3) % CLASSES] = 1.0;
            }
            (x, dev.tensor_from_vec(onehot, (BATCH, CLASSES)))
        })
        .collect();
    let mut t = 1;
    for _ in 0..10 {
        let (x, y) = &batches[t as usize % batches.len()];
        net.train_step(&adam, t, x, y);
        t += 1;
    }
    let start = Instant::now();
    let mut steps = 0usize;
    while start.elapsed() < window {
        let (x, y) = &batches[t as usize % batches.len()];
        net.train_step(&adam, t, x, y);
        t += 1;
        steps += 1;
    }
    (steps * BATCH) as f64 / start.elapsed().as_secs_f64()
}

/// The first python with torch of `PEER_PYTHON`, the peers' venv (`../shared/peers/setup.sh`)
/// and `python3`.
fn torch_python() -> Option<std::ffi::OsString> {
    [
        std::env::var_os("PEER_PYTHON"),
        common::peer_venv_python().map(|p| p.into_os_string()),
        Some("python3".into()),
    ]
    .into_iter()
    .flatten()
    .find(|py| common::has_torch(py))
}

/// Runs the PyTorch twin; `None` when PyTorch is not installed or the script fails.
fn pytorch(window: Duration) -> Option<f64> {
    let python = torch_python()?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/reference_cnn.py");
    let out = Command::new(&python)
        .args([script, "--seconds", &window.as_secs_f64().to_string()])
        .output()
        .ok()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("pytorch_samples_per_sec="))
        .and_then(|v| v.trim().parse().ok())
}

fn main() {
    let mut seconds = 3.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        // `cargo bench` passes `--bench`; only our own flag is read.
        if a == "--seconds" {
            match args.next().and_then(|v| v.parse().ok()) {
                Some(s) => seconds = s,
                None => {
                    eprintln!("--seconds needs a number");
                    std::process::exit(2);
                }
            }
        }
    }
    let window = Duration::from_secs_f64(seconds);
    // dfdx's matmul runs on the global rayon pool: one thread keeps the comparison to
    // single-threaded PyTorch fair.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("build a one-thread rayon pool");
    // Two rounds each, interleaved, best of each: the machine may be shared.
    let mut best_ours = 0.0f64;
    let mut best_torch: Option<f64> = None;
    for round in 0..2 {
        let s = pool.install(|| ours(window));
        println!("round {round}: ours {s:.1} samples/s");
        best_ours = best_ours.max(s);
        match pytorch(window) {
            Some(p) => {
                println!("round {round}: pytorch {p:.1} samples/s");
                best_torch = Some(best_torch.map_or(p, |b: f64| b.max(p)));
            }
            None => {
                if round == 0 {
                    println!("PyTorch is absent (no PEER_PYTHON, peers' venv or python3 with torch): ours only");
                }
                break;
            }
        }
    }
    println!("ours: {best_ours:.1} samples/s (batch {BATCH}, 1 thread)");
    if let Some(p) = best_torch {
        println!("pytorch: {p:.1} samples/s (batch {BATCH}, 1 thread)");
        println!("ratio ours/pytorch: {:.2}", best_ours / p);
    }
}
