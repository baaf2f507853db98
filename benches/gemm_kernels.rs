//! The GEMM our convolutions call (matrixmultiply, one sample at a time) against the `gemm`
//! crate that dfdx's matrix products use, on the shapes of the peer's fixed CNN (28x28, 16 and 32
//! channels, 3x3): forward `W * col`, the weight gradient `dY * col^T` and the input gradient
//! `W^T * dY`, one thread. Prints GFLOP/s of each and their ratio, all in one run.
//!
//! `cargo bench --bench gemm_kernels`

use std::hint::black_box;
use std::time::Instant;

/// `c = a * b + beta * c`, row-major, by matrixmultiply.
fn mm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
    // SAFETY: the slices are exactly m x k, k x n and m x n, row-major.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

/// The same product by the `gemm` crate, one thread.
fn gm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
    // SAFETY: as above; gemm's `alpha` scales the old `c`, its `beta` the product.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != 0.0,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            beta,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

type Kernel = fn(usize, usize, usize, &[f32], &[f32], f32, &mut [f32]);

/// GFLOP/s of `f` on an m x k by k x n product, best of 5 runs of enough repetitions.
fn gflops(f: Kernel, m: usize, k: usize, n: usize) -> f64 {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0.0f32; m * n];
    let flops = 2.0 * (m * k * n) as f64;
    let reps = ((2e8 / flops) as usize).max(1);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            f(
                m,
                k,
                n,
                black_box(&a),
                black_box(&b),
                0.0,
                black_box(&mut c),
            );
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    flops / best / 1e9
}

fn main() {
    // (what, m, k, n): per sample, as src/nn/ops/conv.rs multiplies.
    let shapes = [
        ("conv 1->16 on 28x28, forward", 16, 9, 784),
        ("conv 16->16 on 28x28, forward", 16, 144, 784),
        ("conv 16->16, weight gradient", 16, 784, 144),
        ("conv 16->16, input gradient", 144, 16, 784),
        ("conv 16->32 on 14x14, forward", 32, 144, 196),
        ("conv 16->32, weight gradient", 32, 196, 144),
        ("conv 16->32, input gradient", 144, 32, 196),
        ("dense 128x784 by 784x256 (MLP layer)", 128, 784, 256),
    ];
    println!(
        "| product (m x k x n) | matrixmultiply GFLOP/s | gemm GFLOP/s | gemm / matrixmultiply |"
    );
    println!("|---|---:|---:|---:|");
    for (what, m, k, n) in shapes {
        let a = gflops(mm, m, k, n);
        let b = gflops(gm, m, k, n);
        println!(
            "| {what} ({m} x {k} x {n}) | {a:.1} | {b:.1} | {:.2}x |",
            b / a
        );
    }
}
