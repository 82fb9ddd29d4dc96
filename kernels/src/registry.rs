//! Every kernel by name, whether this CPU can run it, and the `auto` choice.
//!
//! Kernels are named `<format>-<isa>` (`i2s-scalar`, `tq2-avx2`, ...), the
//! lossy LUT kernels `<format>-<isa>-lossy` (`tl1-avx2-lossy`). The
//! registry lists every kernel compiled into this binary, but hands one out
//! only when the CPU has the features it needs; otherwise the error names
//! the missing feature. Feature detection runs once (see [`crate::cpu`]).

use crate::cpu::{self, CpuFeature};
use crate::formats::Format;
use crate::kernel::{Isa, Kernel};
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown kernel '{name}'; expected one of: {known}")]
    Unknown { name: String, known: String },
    #[error("kernel {name} needs the CPU feature '{missing}', which this CPU does not have")]
    Unavailable {
        name: &'static str,
        missing: CpuFeature,
    },
    #[error("empty kernel list; expected a kernel name, 'all', 'auto' or '<format>-auto'")]
    Empty,
}

/// Every kernel compiled into this binary, sorted by format, then ISA, each
/// lossless kernel before its `-lossy` variant.
pub fn all() -> &'static [&'static dyn Kernel] {
    static ALL: OnceLock<Vec<&'static dyn Kernel>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut v: Vec<&'static dyn Kernel> = crate::scalar::KERNELS.to_vec();
        #[cfg(target_arch = "x86_64")]
        v.extend_from_slice(crate::x86_64::KERNELS);
        #[cfg(target_arch = "aarch64")]
        v.extend_from_slice(crate::aarch64::KERNELS);
        v.sort_by_key(|k| (k.info().format, k.info().isa, k.info().is_lossy()));
        v
    })
}

/// Ok when this CPU can run `kernel`, else the first missing feature.
pub fn availability(kernel: &dyn Kernel) -> Result<(), CpuFeature> {
    match cpu::features().first_missing(kernel.info().requires) {
        None => Ok(()),
        Some(f) => Err(f),
    }
}

/// The kernel called `name`, if it is known and this CPU can run it.
pub fn find(name: &str) -> Result<&'static dyn Kernel, RegistryError> {
    let kernel = all()
        .iter()
        .copied()
        .find(|k| k.info().name == name)
        .ok_or_else(|| RegistryError::Unknown {
            name: name.to_string(),
            known: known_names(),
        })?;
    availability(kernel).map_err(|missing| RegistryError::Unavailable {
        name: kernel.info().name,
        missing,
    })?;
    Ok(kernel)
}

/// The scalar reference kernel of a format (never a lossy one).
pub fn reference(format: Format) -> &'static dyn Kernel {
    all()
        .iter()
        .copied()
        .find(|k| {
            let i = k.info();
            i.format == format && i.isa == Isa::Scalar && !i.is_lossy()
        })
        .expect("every format has a scalar kernel")
}

/// The scalar lossy kernel of a LUT format, which defines the lossy
/// arithmetic every SIMD lossy kernel of the format must reproduce.
pub fn lossy_reference(format: Format) -> Option<&'static dyn Kernel> {
    all().iter().copied().find(|k| {
        let i = k.info();
        i.format == format && i.isa == Isa::Scalar && i.is_lossy()
    })
}

/// How `auto` ranks ISAs: wider or newer instructions first. A static
/// preference, not a measurement; `layer --kernel FORMAT-scalar,...` measures.
fn isa_rank(isa: Isa) -> u8 {
    match isa {
        Isa::Scalar => 0,
        Isa::Avx2 | Isa::Neon => 1,
        Isa::AvxVnni | Isa::Dotprod => 2,
        Isa::Avx512 | Isa::I8mm => 3,
        Isa::Amx => 4,
    }
}

/// The highest-ranked lossless kernel of `format` this CPU can run.
pub fn auto(format: Format) -> &'static dyn Kernel {
    all()
        .iter()
        .copied()
        .filter(|k| k.info().format == format && !k.info().is_lossy() && availability(*k).is_ok())
        .max_by_key(|k| isa_rank(k.info().isa))
        .expect("the scalar kernel is always available")
}

/// Resolves a comma-separated kernel list: names, `all` (every available
/// kernel), `auto` (the `auto` kernel of each format) or `<format>-auto`.
/// Duplicates are dropped; order is kept.
pub fn resolve(spec: &str) -> Result<Vec<&'static dyn Kernel>, RegistryError> {
    let mut out: Vec<&'static dyn Kernel> = Vec::new();
    let mut push = |k: &'static dyn Kernel| {
        if !out.iter().any(|o| o.info().name == k.info().name) {
            out.push(k);
        }
    };
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "all" => all()
                .iter()
                .filter(|k| availability(**k).is_ok())
                .for_each(|k| push(*k)),
            "auto" => Format::ALL.into_iter().for_each(|f| push(auto(f))),
            _ => match item.strip_suffix("-auto").and_then(Format::from_name) {
                Some(format) => push(auto(format)),
                None => push(find(item)?),
            },
        }
    }
    if out.is_empty() {
        return Err(RegistryError::Empty);
    }
    Ok(out)
}

fn known_names() -> String {
    let mut names = vec!["all".to_string(), "auto".to_string()];
    names.extend(Format::ALL.iter().map(|f| format!("{f}-auto")));
    names.extend(all().iter().map(|k| k.info().name.to_string()));
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_well_formed() {
        let names: Vec<_> = all().iter().map(|k| k.info().name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate kernel names");
        for k in all() {
            let i = k.info();
            let suffix = if i.is_lossy() { "-lossy" } else { "" };
            assert_eq!(i.name, format!("{}-{}{suffix}", i.format, i.isa));
        }
    }

    #[test]
    fn lossy_lut_kernels_are_listed_as_inexact_and_never_auto() {
        let lossy: Vec<_> = all().iter().filter(|k| k.info().is_lossy()).collect();
        for f in Format::ALL {
            let scalar = lossy_reference(f);
            assert_eq!(scalar.is_some(), f.is_lut(), "{f}");
            if let Some(k) = scalar {
                assert_eq!(k.info().name, format!("{f}-scalar-lossy"));
                assert!(!k.info().exact);
                assert!(availability(k).is_ok());
            }
            assert!(!auto(f).info().is_lossy());
            assert!(!reference(f).info().is_lossy());
        }
        #[cfg(target_arch = "x86_64")]
        let simd = ["tl1-avx2-lossy", "tl2-avx2-lossy", "tmac-avx2-lossy"];
        #[cfg(target_arch = "aarch64")]
        let simd = ["tl1-neon-lossy", "tl2-neon-lossy", "tmac-neon-lossy"];
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let simd: [&str; 0] = [];
        for name in ["tl1-scalar-lossy", "tl2-scalar-lossy", "tmac-scalar-lossy"]
            .iter()
            .chain(&simd)
        {
            let k = all().iter().find(|k| k.info().name == *name);
            assert!(
                k.is_some_and(|k| !k.info().exact),
                "{name}: not listed with exact=false"
            );
        }
        // `all` runs them wherever the CPU can.
        let everything = resolve("all").unwrap();
        for k in &lossy {
            let listed = everything.iter().any(|e| e.info().name == k.info().name);
            assert_eq!(listed, availability(**k).is_ok(), "{}", k.info().name);
        }
    }

    #[test]
    fn every_format_has_an_available_scalar_reference() {
        for f in Format::ALL {
            let k = reference(f);
            assert_eq!(k.info().isa, Isa::Scalar);
            assert!(availability(k).is_ok());
            assert_eq!(find(k.info().name).unwrap().info().name, k.info().name);
        }
    }

    #[test]
    fn unknown_names_are_refused_with_the_list() {
        let err = find("i3s-scalar").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown kernel 'i3s-scalar'"), "{msg}");
        assert!(msg.contains("i2s-scalar"), "{msg}");
        assert!(resolve("i2s-scalar,nope").is_err());
        assert_eq!(resolve(" , ").unwrap_err(), RegistryError::Empty);
    }

    #[test]
    fn unavailable_kernels_name_the_missing_feature() {
        let missing = all()
            .iter()
            .find_map(|k| availability(*k).err().map(|f| (k, f)));
        if let Some((k, f)) = missing {
            let err = find(k.info().name).unwrap_err();
            assert_eq!(
                err,
                RegistryError::Unavailable {
                    name: k.info().name,
                    missing: f
                }
            );
            assert!(err.to_string().contains(f.name()));
        }
    }

    #[test]
    fn resolve_expands_all_auto_and_lists() {
        let all_available = resolve("all").unwrap();
        assert!(all_available.iter().all(|k| availability(*k).is_ok()));
        assert_eq!(resolve("auto").unwrap().len(), Format::ALL.len());
        let picked = resolve("i2s-auto").unwrap();
        assert_eq!(picked[0].info().format, Format::I2s);
        let list = resolve("tq2-scalar,i2s-scalar,tq2-scalar").unwrap();
        let names: Vec<_> = list.iter().map(|k| k.info().name).collect();
        assert_eq!(names, ["tq2-scalar", "i2s-scalar"]);
    }
}
