//! Run-time choice of SIMD level for our element-wise loops.
//!
//! The crate is built for any x86-64, where the compiler may only use SSE2: four lanes and no
//! fused multiply-add. [`simd_fn!`] compiles a loop once more for AVX2 + FMA (and, asked, once
//! more for AVX-512F) and picks one per call from what the CPU reports (a cached check). Used by
//! the ops' element-wise loops, the optimisers and the standardisation of features.

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

/// Defines `fn name(args)` whose body is compiled for plain x86-64 and for AVX2 + FMA; written
/// `simd_fn! { avx512 fn ... }`, also for AVX-512F, picked first where the CPU has it.
///
/// AVX-512 pays for loops that compute much per value (`tanh` and the logistic function: 1.5x
/// and 1.3x on 4,096 values in cache). On the short streaming loops of batch norm it made the
/// fixed CNN of the trainer bench slower (4.7-4.9 s against 4.5 s), so those keep AVX2. Either
/// way the values are the same: the body's operations are the same, in the same order, and the
/// compiler contracts nothing into fused multiply-adds.
macro_rules! simd_fn {
    (avx512 $(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    generic($($arg),*)
                }
                if $crate::simd::has_avx512() && $crate::simd::has_avx2_fma() {
                    // SAFETY: the CPU supports every feature `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
            }
            $crate::simd::simd_fn!(@avx2 generic($($arg : $ty),*) $(-> $ret)?)
        }
    };
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            $crate::simd::simd_fn!(@avx2 generic($($arg : $ty),*) $(-> $ret)?)
        }
    };
    // The AVX2 + FMA copy of the body (`generic`) where the CPU has them, else the body.
    (@avx2 $generic:ident($($arg:ident : $ty:ty),*) $(-> $ret:ty)?) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                $generic($($arg),*)
            }
            if $crate::simd::has_avx2_fma() {
                // SAFETY: the CPU supports every feature `avx2` is compiled for.
                return unsafe { avx2($($arg),*) };
            }
        }
        $generic($($arg),*)
    }};
}

pub(crate) use simd_fn;
