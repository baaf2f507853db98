//! How repeatable `nas`'s latency measurements are: the two targets of the latency objective.
//!
//! `cargo run --example latency [-- quiet|training|unpaused|all]` (default `all`). Ten CNNs
//! are drawn from `search_spaces/bench_cnn.ron` (digits, 8x8 inputs, seed 0); each is measured
//! ten times in a row as `nas search` measures a candidate (`nas::nn::latency::measure`). It
//! prints, for every model, the median latency of the ten and their coefficient of variation
//! (target: under 5%), and the Spearman rank correlation of the ten models' latencies between
//! the first and the second measurement of each (target: above 0.9).
//!
//! Modes: `quiet` measures with nothing else running in this process; `training` with a
//! second thread training a CNN on digits the whole time, as another search worker would
//! (paused during each measurement, as `nas search` pauses its workers); `unpaused` with the
//! same thread training straight through the measurements (what `nas` does not do), to show
//! what the pause is for. Other processes on the machine are not controlled.

use nas::data::{load, DataSource, LoadOptions};
use nas::nn::latency::{self, measure};
use nas::search::{RandomSampler, Sampler};
use nas::space::SearchSpace;
use nas::study::Latency;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const MODELS: usize = 10;
const REPEATS: usize = 10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let modes: Vec<&str> = match mode.as_str() {
        "all" => vec!["quiet", "training", "unpaused"],
        m @ ("quiet" | "training" | "unpaused") => vec![m],
        other => {
            return Err(format!("unknown mode `{other}` (quiet, training, unpaused, all)").into())
        }
    };
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/search_spaces/bench_cnn.ron");
    let space = SearchSpace::from_file(path.as_ref())?;
    let data = load(&DataSource::parse("digits")?, &LoadOptions::default())?.train;
    let (shape, outputs) = (data.shape, data.n_outputs());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let candidates: Vec<_> = (0..MODELS)
        .map(|_| space.decode(&RandomSampler.suggest(&space, &[], &mut rng)))
        .collect();
    for mode in modes {
        let stop = Arc::new(AtomicBool::new(false));
        let background = (mode != "quiet").then(|| {
            let (stop, data, cand) = (stop.clone(), data.clone(), candidates[0].clone());
            let registered = mode == "training";
            std::thread::spawn(move || {
                // A search worker's folds register as training; `unpaused` does not, so its pause
                // points never wait.
                let _training = registered.then(latency::training);
                while !stop.load(Ordering::Relaxed) {
                    let _ = nas::train::fit(&cand, &data, 1, 0, &stop);
                }
            })
        });
        let started = std::time::Instant::now();
        let mut runs: Vec<Vec<Latency>> = Vec::new();
        for cand in &candidates {
            let ms: Vec<Latency> = (0..REPEATS)
                .map(|k| measure(&cand.arch, shape, outputs, k as u64))
                .collect::<Result<_, _>>()?;
            runs.push(ms);
        }
        stop.store(true, Ordering::Relaxed);
        if let Some(h) = background {
            let _ = h.join();
        }
        report(
            mode,
            &candidates,
            &runs,
            started.elapsed().as_secs_f64(),
            shape,
            outputs,
        );
    }
    Ok(())
}

fn report(
    mode: &str,
    candidates: &[nas::space::Candidate],
    runs: &[Vec<Latency>],
    seconds: f64,
    shape: nas::data::InputShape,
    outputs: usize,
) {
    println!("\nmode `{mode}`: {MODELS} models x {REPEATS} measurements in {seconds:.1}s");
    println!("| model | params | MACs | median ms (batch 1) | CV of the {REPEATS} | spread within one | median wall ms | CV wall | ms/sample at batch 32 |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut cvs = Vec::new();
    for (i, (cand, ms)) in candidates.iter().zip(runs).enumerate() {
        let cost = nas::nn::cost(&cand.arch, shape, outputs).unwrap_or_default();
        let cpu: Vec<f64> = ms.iter().map(|l| l.ms).collect();
        let wall: Vec<f64> = ms.iter().map(|l| l.wall_ms).collect();
        let batch: Vec<f64> = ms.iter().map(|l| l.batch_ms).collect();
        let spread: Vec<f64> = ms.iter().map(|l| l.spread).collect();
        cvs.push(cv(&cpu));
        println!(
            "| {i} | {} | {} | {:.4} | {:.1}% | {:.1}% | {:.4} | {:.1}% | {:.4} |",
            cost.params,
            cost.macs,
            latency::quantile(&cpu, 0.5),
            100.0 * cv(&cpu),
            100.0 * latency::quantile(&spread, 0.5),
            latency::quantile(&wall, 0.5),
            100.0 * cv(&wall),
            latency::quantile(&batch, 0.5),
        );
    }
    let first: Vec<f64> = runs.iter().map(|m| m[0].ms).collect();
    let second: Vec<f64> = runs.iter().map(|m| m[1].ms).collect();
    let wall_first: Vec<f64> = runs.iter().map(|m| m[0].wall_ms).collect();
    let wall_second: Vec<f64> = runs.iter().map(|m| m[1].wall_ms).collect();
    println!(
        "mode `{mode}`: CV over {REPEATS} repeats: max {:.1}%, median {:.1}% (target < 5%); Spearman rho of the {MODELS} models, measurement 1 vs 2: {:.3} (target > 0.9; wall clock {:.3})",
        100.0 * cvs.iter().cloned().fold(0.0, f64::max),
        100.0 * latency::quantile(&cvs, 0.5),
        spearman(&first, &second),
        spearman(&wall_first, &wall_second),
    );
}

/// Standard deviation over mean.
fn cv(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    var.sqrt() / mean
}

/// Ranks from 1, ties at their mean rank.
fn ranks(xs: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut r = vec![0.0; xs.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && xs[order[j + 1]] == xs[order[i]] {
            j += 1;
        }
        for k in i..=j {
            r[order[k]] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rho: Pearson's correlation of the ranks.
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}
