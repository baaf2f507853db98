//! Run-time choice of SIMD level for our element-wise loops.
//!
//! The crate is built for any x86-64, where the compiler may only use SSE2: four lanes and no
//! fused multiply-add. [`simd_fn!`] compiles a loop twice, once more for AVX2 + FMA, and picks
//! one per call from what the CPU reports (a cached check).

/// Whether this CPU runs AVX2 and FMA instructions.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Whether this CPU runs AVX-512F instructions (16 lanes, 32 vector registers).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// Defines `fn name(args)` whose body is compiled for plain x86-64 and for AVX2 + FMA.
macro_rules! simd_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    generic($($arg),*)
                }
                if $crate::nn::ops::simd::has_avx2_fma() {
                    // SAFETY: the CPU supports every feature `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

pub(crate) use simd_fn;
