//! Trainer throughput: fixed networks trained through the code path of a search trial
//! (`SearchSpace::from_file`, the library's loaders, `PreparedData::new(.., 1, ..)`,
//! `Controller::run_trial`), each followed at once by PyTorch on the same data when present.
//!
//! Run with `cargo bench --bench trainer` (about two minutes on 2 cores); `-- --help` lists the
//! options, `NAS_BENCH_QUICK=1` runs tiny data in seconds. Both sides run on one thread, count
//! `epochs x training samples` over the wall time of training with validation after every epoch
//! (what `train_fixed.py` of `../shared/peers` prints), and are printed as a ratio: timings
//! from a shared machine are only comparable within one invocation.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

mod common;

use nas::controller::{derive_seed, Controller, PreparedData, SearchOptions};
use nas::data::{load, DataSource, InputShape, LoadOptions};
use nas::search::{sample_uniform, sample_with, Decision, TrialState};
use nas::space::SearchSpace;
use nas::study::Metric;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Peak single-precision throughput of one core of the reference machine: AMD EPYC at
/// 2.45 GHz, AVX2 + FMA, 32 FLOPs per cycle (two 8-wide FMA units) = 78.4 GFLOP/s. Used when
/// this CPU's own peak cannot be measured ([`measured_peak_gflops`]).
const PEAK_GFLOPS: f64 = 2.45 * 32.0;

const USAGE: &str = "\
usage: cargo bench --bench trainer -- [--train N] [--test N] [--data DIR] [--only NAMES] [--rounds R]
  --train N      training images of the synthetic 28x28 IDX data (default 12000; quick: 1000)
  --test N       test images (default 2000; quick: 200); the 1x40 CSVs have as many rows
  --data DIR     an existing 28x28 IDX directory instead (e.g. /tmp/mnist)
  --only NAMES   comma-separated subset of: mlp, cnn, cnn1d, residual, separable
  --rounds R     train each case R times, nas and PyTorch alternating; the best of each counts
                 (default 1)
environment: NAS_BENCH_QUICK=1 (tiny data), PEER_PYTHON (a python with torch; default
  ~/.cache/nas-peers-venv/bin/python), NAS_PEERS (default ../shared/peers of the checkout)";

/// One network to measure.
struct Case {
    name: &'static str,
    /// Space file, relative to the checkout.
    space: PathBuf,
    /// `train_fixed.py`'s name for the same network, where it has one.
    peer: Option<&'static str>,
    /// 1-D signals (CSV, `--shape 1x40`) rather than 28x28 images.
    signals: bool,
}

/// What one side measured.
#[derive(Clone, Copy)]
struct Speed {
    samples_per_sec: f64,
    seconds: f64,
    val_acc: f64,
}

struct Row {
    name: &'static str,
    input: String,
    epochs: usize,
    train_samples: usize,
    macs: u64,
    ours: Speed,
    torch: Option<Speed>,
}

struct Settings {
    n_train: usize,
    n_test: usize,
    data: Option<PathBuf>,
    only: Option<Vec<String>>,
    rounds: usize,
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("trainer bench: {msg}");
    std::process::exit(2);
}

fn settings() -> Settings {
    let quick = std::env::var_os("NAS_BENCH_QUICK").is_some_and(|v| v != "0" && !v.is_empty());
    let mut s = Settings {
        n_train: if quick { 1000 } else { 12_000 },
        n_test: if quick { 200 } else { 2000 },
        data: None,
        only: None,
        rounds: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .unwrap_or_else(|| fail(format!("{flag} needs a value\n{USAGE}")))
        };
        let count = |flag: &str, v: String, min: usize| -> usize {
            v.parse()
                .ok()
                .filter(|n| *n >= min)
                .unwrap_or_else(|| fail(format!("{flag}: `{v}` is not a count of at least {min}")))
        };
        match a.as_str() {
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--train" => s.n_train = count("--train", value("--train"), 10),
            "--test" => s.n_test = count("--test", value("--test"), 10),
            "--rounds" => s.rounds = count("--rounds", value("--rounds"), 1),
            "--data" => s.data = Some(PathBuf::from(value("--data"))),
            "--only" => {
                s.only = Some(
                    value("--only")
                        .split(',')
                        .map(|n| n.trim().to_string())
                        .collect(),
                )
            }
            other => fail(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    s
}

fn peers_dir(root: &Path) -> PathBuf {
    std::env::var_os("NAS_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/peers"))
}

/// The python that runs the peer, if one with torch exists.
fn peer_python() -> Result<PathBuf, String> {
    let python = match std::env::var_os("PEER_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => common::peer_venv_python().ok_or("HOME is not set")?,
    };
    if common::has_torch(python.as_os_str()) {
        Ok(python)
    } else {
        Err(format!(
            "{}: no python with torch (run ../shared/peers/setup.sh or set PEER_PYTHON)",
            python.display()
        ))
    }
}

/// A learnable synthetic 28x28 IDX data set made by the peers' `make_idx.py` (kept between runs).
fn make_idx(peers: &Path, out: &Path, n_train: usize, n_test: usize) -> PathBuf {
    let dir = out.join(format!("idx-{n_train}-{n_test}"));
    if dir.join("t10k-labels-idx1-ubyte").exists() {
        return dir;
    }
    let status = Command::new("python3")
        .arg(peers.join("make_idx.py"))
        .arg(&dir)
        .args([
            n_train.to_string(),
            n_test.to_string(),
            "28".into(),
            "28".into(),
        ])
        .status()
        .unwrap_or_else(|e| fail(format!("cannot run python3 make_idx.py: {e}")));
    if !status.success() {
        fail("make_idx.py failed (it needs python3 with numpy)");
    }
    dir
}

/// A training and a test CSV of 1-D signals (`--data train.csv,test.csv`), as many rows as the
/// images have, so that both kinds of case train on the same number of samples.
fn make_signals(out: &Path, n_train: usize, n_test: usize) -> PathBuf {
    let train = out.join(format!("signals-train-{n_train}.csv"));
    let test = out.join(format!("signals-test-{n_test}.csv"));
    write_signals(&train, n_train, 1);
    write_signals(&test, n_test, 2);
    PathBuf::from(format!("{},{}", train.display(), test.display()))
}

/// 40 values a row, ten classes of sines of different frequencies with a random phase and noise
/// (as tests/search.rs makes them, with more classes).
fn write_signals(path: &Path, rows: usize, seed: u64) {
    if path.exists() {
        return;
    }
    let mut state = 12345u64 ^ seed;
    let mut uniform = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut csv = String::from("label");
    for i in 0..40 {
        csv.push_str(&format!(",x{i}"));
    }
    csv.push('\n');
    for row in 0..rows {
        let label = row % 10;
        let freq = 0.1 + 0.08 * label as f64;
        let phase = uniform() * std::f64::consts::TAU;
        csv.push_str(&label.to_string());
        for i in 0..40 {
            let v = (freq * i as f64 + phase).sin() + 0.3 * (uniform() - 0.5);
            csv.push_str(&format!(",{v:.4}"));
        }
        csv.push('\n');
    }
    std::fs::write(path, csv).unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
}

/// Trains the space's one configuration as trial 0 of a one-fold study would, on one thread.
fn ours(space_file: &Path, data: &Path, shape: Option<InputShape>) -> (Speed, usize, usize, u64) {
    let space = SearchSpace::from_file(space_file)
        .unwrap_or_else(|e| fail(format!("{}: {e}", space_file.display())));
    let source = DataSource::parse(&data.display().to_string()).unwrap_or_else(|e| fail(e));
    let opts = LoadOptions {
        shape,
        task: Some(space.task),
        ..LoadOptions::default()
    };
    let split = load(&source, &opts).unwrap_or_else(|e| fail(e));
    let seed = 0;
    let prepared = PreparedData::new(split, 1, seed).unwrap_or_else(|e| fail(e));
    // A fixed space has one configuration: any sampler draws it.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let config = sample_with(&space, |i, _| {
        sample_uniform(&space.params[i].dist, &mut rng)
    });
    let controller = Controller {
        space: &space,
        data: &prepared,
        metric: Metric::for_task(space.task),
        opts: SearchOptions {
            trials: Some(1),
            seed,
            workers: 1,
            ..SearchOptions::default()
        },
        cancel: Arc::new(AtomicBool::new(false)),
    };
    // As the controller's workers do: each trial in its own one-thread pool.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap_or_else(|e| fail(e));
    let start = Instant::now();
    let rec = pool.install(|| {
        controller.run_trial(0, config, derive_seed(seed, 0), &mut |_, _| {
            Decision::Continue
        })
    });
    let seconds = start.elapsed().as_secs_f64();
    if rec.state != TrialState::Complete {
        fail(format!(
            "{}: trial ended {}: {}",
            space_file.display(),
            rec.state.label(),
            rec.error.unwrap_or_default()
        ));
    }
    let train_samples = prepared.folds[0].train.len();
    // `budget` is the epochs trained, summed over the one fold.
    let epochs = rec.budget;
    let speed = Speed {
        samples_per_sec: (train_samples * epochs) as f64 / seconds,
        seconds,
        val_acc: rec.cv_mean.unwrap_or(f64::NAN),
    };
    (speed, epochs, train_samples, rec.macs)
}

/// `train_fixed.py DIR NET EPOCHS 1`: its wall time, samples per second and last accuracy.
fn pytorch(python: &Path, peers: &Path, data: &Path, net: &str, epochs: usize) -> Option<Speed> {
    let out = Command::new(python)
        .arg(peers.join("train_fixed.py"))
        .arg(data)
        .args([net, &epochs.to_string(), "1"])
        .env("OMP_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .output()
        .ok()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        eprintln!(
            "train_fixed.py {net} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    // "torch mlp threads=1: 5 epochs in 4.2s -> 11428 train samples/s (incl. validation); val acc 0.9876"
    let line = stdout.lines().find(|l| l.starts_with("torch "))?;
    let number_before = |marker: &str| -> Option<f64> {
        let head = &line[..line.find(marker)?];
        head.rsplit(' ').next()?.parse().ok()
    };
    let seconds: f64 = line.split(" in ").nth(1)?.split('s').next()?.parse().ok()?;
    Some(Speed {
        samples_per_sec: number_before(" train samples/s")?,
        seconds,
        val_acc: line.rsplit(' ').next()?.parse().ok()?,
    })
}

/// The CPU's model name, to print beside a peak that belongs to one machine.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// This core's single-precision multiply-add rate, measured: twelve independent chains of
/// fused multiply-adds on registers only (no memory traffic), in the widest vectors the CPU
/// has, best of five runs of about 50 ms each. The clock of a shared machine is not its
/// nominal one (this bench's MLP once ran at 108% of the 2.45 GHz figure), so the fraction of
/// peak is taken against what the core does now. `None` without AVX2 + FMA.
fn measured_peak_gflops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        const ITERS: u64 = 10_000_000;
        let (run, flops): (unsafe fn(u64) -> f32, f64) = if is_x86_feature_detected!("avx512f") {
            (fma_chains_512, 12.0 * 16.0 * 2.0)
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            (fma_chains_256, 12.0 * 8.0 * 2.0)
        } else {
            return None;
        };
        let mut best = 0.0f64;
        for _ in 0..5 {
            let t = Instant::now();
            // SAFETY: the CPU has the instruction set `run` was compiled for (checked above).
            let sum = unsafe { run(ITERS) };
            let secs = t.elapsed().as_secs_f64();
            std::hint::black_box(sum);
            best = best.max(ITERS as f64 * flops / secs / 1e9);
        }
        Some(best)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Generates a register-only FMA loop for [`measured_peak_gflops`] in one instruction set.
macro_rules! fma_chains {
    ($name:ident, $feature:literal, $set1:ident, $fma:ident, $v:ty) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $name(iters: u64) -> f32 {
            use std::arch::x86_64::*;
            let (a, b) = ($set1(0.999_999), $set1(1e-7));
            // Twelve different chains, every one read at the end: none is dead or shared.
            let mut acc: [$v; 12] = std::array::from_fn(|i| $set1(i as f32));
            for _ in 0..iters {
                for x in acc.iter_mut() {
                    *x = $fma(*x, a, b);
                }
            }
            acc.iter()
                .map(|v| {
                    let lanes: [f32; std::mem::size_of::<$v>() / 4] = std::mem::transmute(*v);
                    lanes.iter().sum::<f32>()
                })
                .sum()
        }
    };
}
fma_chains!(
    fma_chains_512,
    "avx512f",
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    __m512
);
fma_chains!(
    fma_chains_256,
    "avx2,fma",
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    __m256
);

fn gflops(macs: u64, samples_per_sec: f64) -> f64 {
    // Forward, and a backward of about twice its work; a multiply-add is two FLOPs.
    samples_per_sec * 3.0 * 2.0 * macs as f64 / 1e9
}

fn main() {
    // dfdx runs on rayon: the global pool too gets one thread, as a search's workers have.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let s = settings();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let peers = peers_dir(&root);
    let out = root.join("target/trainer-bench");
    std::fs::create_dir_all(&out).unwrap_or_else(|e| fail(format!("{}: {e}", out.display())));
    let cases = [
        Case {
            name: "mlp",
            space: peers.join("spaces/fixed_mlp.ron"),
            peer: Some("mlp"),
            signals: false,
        },
        Case {
            name: "cnn",
            space: peers.join("spaces/fixed_cnn.ron"),
            peer: Some("cnn"),
            signals: false,
        },
        Case {
            name: "cnn1d",
            space: peers.join("spaces/fixed_cnn.ron"),
            peer: None,
            signals: true,
        },
        Case {
            name: "residual",
            space: root.join("benches/spaces/fixed_residual.ron"),
            peer: None,
            signals: false,
        },
        Case {
            name: "separable",
            space: root.join("benches/spaces/fixed_separable.ron"),
            peer: None,
            signals: false,
        },
    ];
    if let Some(only) = &s.only {
        for n in only {
            if !cases.iter().any(|c| c.name == n) {
                fail(format!("--only: unknown network `{n}`\n{USAGE}"));
            }
        }
    }
    let selected: Vec<&Case> = cases
        .iter()
        .filter(|c| {
            s.only
                .as_ref()
                .is_none_or(|o| o.iter().any(|n| n == c.name))
        })
        .collect();
    let (python, skipped) = match peer_python() {
        Ok(p) => (Some(p), None),
        Err(e) => {
            let note = format!("PyTorch is skipped: {e}");
            println!("{note}");
            (None, Some(note))
        }
    };
    let images = s
        .data
        .clone()
        .unwrap_or_else(|| make_idx(&peers, &out, s.n_train, s.n_test));
    let signals = selected
        .iter()
        .any(|c| c.signals)
        .then(|| make_signals(&out, s.n_train, s.n_test));
    let mut rows = Vec::new();
    for case in selected {
        let (data, shape, input) = match (&signals, case.signals) {
            (Some(csv), true) => (csv.clone(), Some(InputShape::new(1, 1, 40)), "1x40 CSV"),
            _ => (images.clone(), None, "28x28 IDX"),
        };
        let mut row: Option<Row> = None;
        for _ in 0..s.rounds {
            let (speed, epochs, train_samples, macs) = ours(&case.space, &data, shape);
            println!(
                "{:<9} nas:     {epochs} epochs x {train_samples} samples in {:6.1}s -> {:8.0} samples/s; val acc {:.4}",
                case.name, speed.seconds, speed.samples_per_sec, speed.val_acc
            );
            let torch = match (&python, case.peer) {
                (Some(py), Some(net)) => {
                    let t = pytorch(py, &peers, &data, net, epochs);
                    if let Some(t) = t {
                        println!(
                            "{:<9} PyTorch: {epochs} epochs x {train_samples} samples in {:6.1}s -> {:8.0} samples/s; val acc {:.4}; nas/PyTorch {:.2}",
                            case.name,
                            t.seconds,
                            t.samples_per_sec,
                            t.val_acc,
                            speed.samples_per_sec / t.samples_per_sec
                        );
                    }
                    t
                }
                _ => None,
            };
            let faster = |a: Speed, b: Option<Speed>| match b {
                Some(b) if b.samples_per_sec > a.samples_per_sec => b,
                _ => a,
            };
            row = Some(match row {
                None => Row {
                    name: case.name,
                    input: input.into(),
                    epochs,
                    train_samples,
                    macs,
                    ours: speed,
                    torch,
                },
                Some(r) => Row {
                    ours: faster(speed, Some(r.ours)),
                    torch: torch.map(|t| faster(t, r.torch)).or(r.torch),
                    ..r
                },
            });
        }
        rows.extend(row);
    }
    if rows.is_empty() {
        fail("no case selected");
    }
    println!();
    let measured = measured_peak_gflops();
    let peak = measured.unwrap_or(PEAK_GFLOPS);
    println!("| network | input | epochs x samples | MACs/sample | nas samples/s | PyTorch samples/s | nas/PyTorch | nas GFLOP/s (% of peak) | PyTorch GFLOP/s (% of peak) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let pct = |g: f64| format!("{g:.2} ({:.1}%)", 100.0 * g / peak);
    for r in &rows {
        let g_ours = gflops(r.macs, r.ours.samples_per_sec);
        let (torch, ratio, g_torch) = match r.torch {
            Some(t) => (
                format!("{:.0}", t.samples_per_sec),
                format!("{:.2}", r.ours.samples_per_sec / t.samples_per_sec),
                pct(gflops(r.macs, t.samples_per_sec)),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {} x {} | {} | {:.0} | {torch} | {ratio} | {} | {g_torch} |",
            r.name,
            r.input,
            r.epochs,
            r.train_samples,
            r.macs,
            r.ours.samples_per_sec,
            pct(g_ours)
        );
    }
    println!();
    println!(
        "samples/s = epochs x training samples / wall time of training with validation after every epoch (both sides); \
         GFLOP/s = samples/s x 3 x 2 x MACs (training only); peak {peak:.1} GFLOP/s, one core; 1 thread each"
    );
    match measured {
        Some(_) => println!(
            "this cpu: {}; the peak is measured now (register-only multiply-adds, widest vectors); \
             the nominal one of a 2.45 GHz AVX2 core is {PEAK_GFLOPS:.1}",
            cpu_model()
        ),
        None => println!(
            "this cpu: {}; the peak is that of an AMD EPYC at 2.45 GHz (AVX2 + FMA): this one's could not be measured",
            cpu_model()
        ),
    }
    if let Some(note) = skipped {
        println!("{note}");
    }
}
