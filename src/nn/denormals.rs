//! Subnormal floats flushed to zero while a network trains or predicts on this thread.
//!
//! Late in training many gradients (and the products of the spectral convolution's backward
//! pass) fall below `f32::MIN_POSITIVE` (1.2e-38). The CPU takes a slow microcode path for
//! arithmetic on such subnormal values: one 64-channel 5x5 network on digits trained in 18 s
//! where it takes 11 s with them flushed, to the same accuracy.
//! TensorFlow and XLA flush them on their CPU threads for the same reason.
//!
//! [`FlushDenormals`] sets the thread's flush-to-zero and denormals-are-zero modes (x86-64
//! MXCSR bits 15 and 6, AArch64 FPCR.FZ) and restores the previous modes when dropped, so code
//! that runs after it on the same thread computes as before. The compiler assumes the default
//! float environment, so values it folds at compile time are not flushed: that can only differ
//! by a subnormal, below any figure a network's training shows.

/// While alive, subnormal results and inputs count as zero on this thread.
#[must_use = "the modes are restored when the guard is dropped"]
pub struct FlushDenormals {
    saved: Option<u64>,
}

impl FlushDenormals {
    /// Flushes subnormals on this thread until the guard is dropped (no effect on other
    /// architectures than x86-64 and AArch64).
    pub fn new() -> FlushDenormals {
        let saved = arch::read();
        if let Some(v) = saved {
            arch::write(v | arch::FLUSH);
        }
        FlushDenormals { saved }
    }
}

/// A thread's float modes, to set on the threads that compute part of its work (an op split
/// across a pool's threads must flush exactly when its caller does, or it would be slower and
/// its values would depend on the thread that computed them).
#[derive(Clone, Copy, Debug)]
pub struct FloatModes(Option<u64>);

impl FloatModes {
    /// The calling thread's modes.
    pub fn current() -> FloatModes {
        FloatModes(arch::read())
    }

    /// Sets these modes on the calling thread until the guard is dropped.
    pub fn enter(self) -> FlushDenormals {
        let saved = arch::read();
        if let Some(v) = self.0 {
            arch::write(v);
        }
        FlushDenormals { saved }
    }
}

impl Default for FlushDenormals {
    fn default() -> Self {
        FlushDenormals::new()
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        if let Some(v) = self.saved {
            arch::write(v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod arch {
    //! MXCSR: bit 15 flush-to-zero (results), bit 6 denormals-are-zero (inputs).

    use std::arch::asm;

    pub const FLUSH: u64 = (1 << 15) | (1 << 6);

    pub fn read() -> Option<u64> {
        let mut v: u32 = 0;
        // SAFETY: stores the 32-bit MXCSR into `v`, a live local.
        unsafe { asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack, preserves_flags)) };
        Some(u64::from(v))
    }

    pub fn write(v: u64) {
        // The register is 32 bits wide; the value came from `read` (plus two mode bits).
        let v = v as u32;
        // SAFETY: loads MXCSR from `v`, a value read from MXCSR with at most the two flush
        // modes added: no reserved bit is set (which would fault), and both modes are valid.
        unsafe { asm!("ldmxcsr [{}]", in(reg) &v, options(nostack, preserves_flags, readonly)) };
    }
}

#[cfg(target_arch = "aarch64")]
mod arch {
    //! FPCR: bit 24 (FZ) flushes subnormal inputs and results of single and double precision.

    use std::arch::asm;

    pub const FLUSH: u64 = 1 << 24;

    pub fn read() -> Option<u64> {
        let v: u64;
        // SAFETY: reads the floating-point control register.
        unsafe { asm!("mrs {}, fpcr", out(reg) v, options(nomem, nostack, preserves_flags)) };
        Some(v)
    }

    pub fn write(v: u64) {
        // SAFETY: writes back a value read from FPCR with only the FZ mode bit added.
        unsafe { asm!("msr fpcr, {}", in(reg) v, options(nomem, nostack, preserves_flags)) };
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod arch {
    //! Elsewhere the modes are left alone.

    pub const FLUSH: u64 = 0;

    pub fn read() -> Option<u64> {
        None
    }

    pub fn write(_: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A product whose exact value is subnormal; `black_box` keeps it from being folded at
    /// compile time, where the default environment holds.
    fn tiny_product() -> f32 {
        std::hint::black_box(1e-20f32) * std::hint::black_box(1e-20f32)
    }

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn subnormals_are_zero_while_the_guard_lives_and_come_back_after() {
        let before = tiny_product();
        assert!(
            before > 0.0 && !before.is_normal(),
            "{before:e} is not subnormal"
        );
        {
            let _flush = FlushDenormals::new();
            assert_eq!(tiny_product(), 0.0);
            {
                let _inner = FlushDenormals::new();
                assert_eq!(tiny_product(), 0.0);
            }
            // The inner guard restores what it found: still flushing.
            assert_eq!(tiny_product(), 0.0);
            // Normal values are untouched.
            assert_eq!(std::hint::black_box(1.5f32) * 2.0, 3.0);
        }
        assert_eq!(tiny_product(), before);
    }

    /// A thread started before the guard keeps its own modes (one started while a guard
    /// lives inherits them, as threads do on Linux: a trial's pool exists before it trains).
    #[test]
    fn other_threads_are_not_touched() {
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let there = std::thread::spawn(move || {
            wait.recv().unwrap();
            tiny_product()
        });
        let _flush = FlushDenormals::new();
        go.send(()).unwrap();
        // Compared by bits: this thread now reads a subnormal as zero.
        let there = there.join().unwrap();
        assert_ne!(there.to_bits(), 0, "the other thread flushed");
        assert_eq!(tiny_product(), 0.0);
    }
}
