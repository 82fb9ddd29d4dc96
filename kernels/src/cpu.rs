//! CPU feature detection, run once and cached.
//!
//! Every kernel names the features it needs; the registry asks this module
//! whether they are present before it hands a kernel out, so a kernel the CPU
//! cannot run is refused with the name of the missing feature instead of
//! crashing with SIGILL.

use std::fmt;
use std::sync::OnceLock;

/// An instruction-set feature a kernel may need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CpuFeature {
    Avx2,
    Fma,
    F16c,
    Avx512f,
    Avx512bw,
    Avx512vl,
    Avx512vnni,
    Avx512vbmi,
    AvxVnni,
    AmxInt8,
    Neon,
    Dotprod,
    I8mm,
    Fp16,
}

impl CpuFeature {
    /// Every feature this module knows, in display order.
    pub const ALL: [CpuFeature; 14] = [
        CpuFeature::Avx2,
        CpuFeature::Fma,
        CpuFeature::F16c,
        CpuFeature::Avx512f,
        CpuFeature::Avx512bw,
        CpuFeature::Avx512vl,
        CpuFeature::Avx512vnni,
        CpuFeature::Avx512vbmi,
        CpuFeature::AvxVnni,
        CpuFeature::AmxInt8,
        CpuFeature::Neon,
        CpuFeature::Dotprod,
        CpuFeature::I8mm,
        CpuFeature::Fp16,
    ];

    /// The name used by `is_x86_feature_detected!` / `is_aarch64_feature_detected!`.
    pub fn name(self) -> &'static str {
        match self {
            CpuFeature::Avx2 => "avx2",
            CpuFeature::Fma => "fma",
            CpuFeature::F16c => "f16c",
            CpuFeature::Avx512f => "avx512f",
            CpuFeature::Avx512bw => "avx512bw",
            CpuFeature::Avx512vl => "avx512vl",
            CpuFeature::Avx512vnni => "avx512vnni",
            CpuFeature::Avx512vbmi => "avx512vbmi",
            CpuFeature::AvxVnni => "avxvnni",
            CpuFeature::AmxInt8 => "amx-int8",
            CpuFeature::Neon => "neon",
            CpuFeature::Dotprod => "dotprod",
            CpuFeature::I8mm => "i8mm",
            CpuFeature::Fp16 => "fp16",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }

    fn detect(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                CpuFeature::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
                CpuFeature::Fma => std::arch::is_x86_feature_detected!("fma"),
                CpuFeature::F16c => std::arch::is_x86_feature_detected!("f16c"),
                CpuFeature::Avx512f => std::arch::is_x86_feature_detected!("avx512f"),
                CpuFeature::Avx512bw => std::arch::is_x86_feature_detected!("avx512bw"),
                CpuFeature::Avx512vl => std::arch::is_x86_feature_detected!("avx512vl"),
                CpuFeature::Avx512vnni => std::arch::is_x86_feature_detected!("avx512vnni"),
                CpuFeature::Avx512vbmi => std::arch::is_x86_feature_detected!("avx512vbmi"),
                CpuFeature::AvxVnni => std::arch::is_x86_feature_detected!("avxvnni"),
                CpuFeature::AmxInt8 => crate::x86_64::amx::detect(),
                _ => false,
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            match self {
                CpuFeature::Neon => std::arch::is_aarch64_feature_detected!("neon"),
                CpuFeature::Dotprod => std::arch::is_aarch64_feature_detected!("dotprod"),
                CpuFeature::I8mm => std::arch::is_aarch64_feature_detected!("i8mm"),
                CpuFeature::Fp16 => std::arch::is_aarch64_feature_detected!("fp16"),
                _ => false,
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            false
        }
    }
}

impl fmt::Display for CpuFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The set of features this CPU has (a bit set over [`CpuFeature`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuFeatures(u32);

impl CpuFeatures {
    pub fn has(self, feature: CpuFeature) -> bool {
        self.0 & feature.bit() != 0
    }

    /// The first feature of `required` that is missing, if any.
    pub fn first_missing(self, required: &[CpuFeature]) -> Option<CpuFeature> {
        required.iter().copied().find(|&f| !self.has(f))
    }

    /// Names of the present features, space-separated (for reports).
    pub fn names(self) -> Vec<&'static str> {
        CpuFeature::ALL
            .iter()
            .filter(|&&f| self.has(f))
            .map(|f| f.name())
            .collect()
    }
}

/// Features of the running CPU, detected on first use and cached.
pub fn features() -> CpuFeatures {
    static DETECTED: OnceLock<CpuFeatures> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        CpuFeatures(
            CpuFeature::ALL
                .iter()
                .filter(|f| f.detect())
                .fold(0, |bits, f| bits | f.bit()),
        )
    })
}

/// Defines `$name` and `$baseline` with one body: `$baseline` is the body as
/// the crate is compiled (SSE2 on baseline x86-64), `$name` runs the same
/// body compiled for AVX2 where the CPU has it, else `$baseline`. For the
/// plain f32 loops of the model's non-matrix operations (norms, quantization,
/// attention) only the vector width changes: without FMA (never contracted
/// implicitly in Rust) the same operations give the same bits on either path.
#[macro_export]
macro_rules! avx2_where_available {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;
     baseline $baseline:ident $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn wide($($arg: $ty),*) $(-> $ret)? {
                    $baseline($($arg),*)
                }
                if $crate::cpu::features().has($crate::cpu::CpuFeature::Avx2) {
                    // SAFETY: the CPU has AVX2, the only feature `wide` enables.
                    return unsafe { wide($($arg),*) };
                }
            }
            $baseline($($arg),*)
        }

        #[doc = concat!("[`", stringify!($name), "`] as the crate is compiled (without AVX2).")]
        #[inline(always)]
        fn $baseline($($arg: $ty),*) $(-> $ret)? $body
    };
}

/// Asks the CPU to bring the cache lines of `data` towards the core (a hint:
/// it never faults and changes no value). Used for small, scattered reads
/// whose misses would otherwise be taken one at a time, such as a KV cache
/// row a few positions ahead. A no-op where no prefetch instruction is
/// available without unstable features.
#[inline(always)]
pub fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let start = data.as_ptr() as *const u8;
        let bytes = std::mem::size_of_val(data);
        let mut line = 0;
        while line < bytes {
            // SAFETY: SSE is part of the x86-64 baseline, and a prefetch is a
            // hint that never faults; the address lies inside `data`.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                    start.add(line) as *const i8,
                )
            };
            line += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_missing_reports_in_order() {
        let set = CpuFeatures(CpuFeature::Avx2.bit() | CpuFeature::Fma.bit());
        assert_eq!(
            set.first_missing(&[CpuFeature::Avx2, CpuFeature::Fma]),
            None
        );
        assert_eq!(
            set.first_missing(&[CpuFeature::Avx2, CpuFeature::Avx512f, CpuFeature::I8mm]),
            Some(CpuFeature::Avx512f)
        );
    }

    #[test]
    fn detection_is_stable() {
        assert_eq!(features(), features());
        #[cfg(target_arch = "aarch64")]
        assert!(features().has(CpuFeature::Neon));
    }
}
