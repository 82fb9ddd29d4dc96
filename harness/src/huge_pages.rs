//! Large allocations on transparent huge pages (Linux).
//!
//! Token generation streams every weight from DRAM once per token. On 4 KiB
//! pages that is a TLB miss every 4 KiB, and under virtualisation each miss
//! is a two-level page walk whose cost depends on where the pages happen to
//! lie. On the KVM guest (Sapphire-Rapids-class Xeon) this was measured on,
//! a plain 1 GiB read loop, buffers read interleaved in one process, ran at
//! 12.3-15.9 GB/s on the first buffer the process allocated and 14.6-17.8
//! on later ones on 4 KiB pages, and at 17.3-18.8 on every buffer on 2 MiB
//! pages. `ternbench bandwidth` reads 18.1 GB/s with them, 16.9 without.
//! The GEMVs themselves (`layer --cold`, 12-14 GB/s) moved within the noise:
//! they are not yet bound by the page walks.
//!
//! The `ternbench` binary installs [`HugePageAlloc`] as its global allocator
//! and calls [`configure`] first thing: from then on every allocation of at
//! least [`HUGE_PAGE`] bytes (weights, KV caches, the bandwidth probe's
//! buffer) is aligned to 2 MiB and advised with `MADV_HUGEPAGE` before
//! anything touches it, so the kernel backs it with 2 MiB pages when the
//! system's THP mode is `madvise` (most distributions' default) or `always`.
//! `TERNBENCH_HUGE_PAGES=0` turns the advice off; [`status`] records which
//! applied in every output row, since it changes the figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

/// Size and alignment of a transparent huge page on x86-64 and aarch64 with
/// 4 KiB base pages; also the smallest allocation that is advised.
pub const HUGE_PAGE: usize = 2 << 20;

/// Whether large allocations are advised: not configured (a library user,
/// the tests), advised, or switched off by the environment.
static MODE: AtomicU8 = AtomicU8::new(UNCONFIGURED);
const UNCONFIGURED: u8 = 0;
const ADVISED: u8 = 1;
const OFF: u8 = 2;

/// The global allocator of the `ternbench` binary: the system allocator,
/// with allocations of [`HUGE_PAGE`] bytes or more 2 MiB-aligned and advised
/// once [`configure`] has run.
pub struct HugePageAlloc;

impl HugePageAlloc {
    /// The layout handed to the system allocator: large ones 2 MiB-aligned
    /// (always, whatever the mode, so `dealloc` needs no state).
    fn system_layout(layout: Layout) -> Layout {
        if layout.size() >= HUGE_PAGE {
            // 2 MiB is a power of two and the size is unchanged, so this
            // cannot fail for a size that already formed a valid layout.
            Layout::from_size_align(layout.size(), layout.align().max(HUGE_PAGE)).unwrap_or(layout)
        } else {
            layout
        }
    }

    /// Advises a new large allocation (nothing has touched it yet).
    fn advise(ptr: *mut u8, size: usize) {
        #[cfg(target_os = "linux")]
        if !ptr.is_null() && size >= HUGE_PAGE && MODE.load(Ordering::Relaxed) == ADVISED {
            // SAFETY: `ptr..ptr + size` is an allocation this process owns and
            // `ptr` is 2 MiB-aligned (system_layout); MADV_HUGEPAGE changes
            // only how the range is backed, never its contents, and a failure
            // (e.g. THP compiled out) leaves it as it was.
            unsafe {
                libc::madvise(ptr.cast(), size, libc::MADV_HUGEPAGE);
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (ptr, size);
    }
}

// SAFETY: every call goes to `System` with a layout derived from the caller's
// by `system_layout`, which depends only on the size and is applied alike on
// allocation and deallocation; large alignments only grow, so the caller's
// alignment holds.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `GlobalAlloc::alloc` (non-zero size, from the caller).
        let ptr = unsafe { System.alloc(Self::system_layout(layout)) };
        Self::advise(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() < HUGE_PAGE {
            // SAFETY: as for `alloc`; small layouts go to System unchanged.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // The system allocator zeroes over-aligned memory with a write, which
        // would touch the pages before the advice: advise first, then zero.
        // SAFETY: as for `alloc`; the write stays inside the allocation.
        unsafe {
            let ptr = self.alloc(layout);
            if !ptr.is_null() {
                std::ptr::write_bytes(ptr, 0, layout.size());
            }
            ptr
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout, so from System
        // with the same system layout.
        unsafe { System.dealloc(ptr, Self::system_layout(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() < HUGE_PAGE && new_size < HUGE_PAGE {
            // SAFETY: small before and after: the system layout is the
            // caller's, as `GlobalAlloc::realloc` requires.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // A change of alignment class: a new allocation (advised), a copy.
        // SAFETY: `new_size` with the old alignment forms a valid layout (the
        // caller's contract); the regions do not overlap; `ptr` is freed with
        // its own layout.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// Turns the advice on, unless `TERNBENCH_HUGE_PAGES` is `0`, `off` or
/// `no`. Called once by the binary before any large allocation.
pub fn configure() {
    let off = std::env::var("TERNBENCH_HUGE_PAGES")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "off" | "no"));
    MODE.store(if off { OFF } else { ADVISED }, Ordering::Relaxed);
}

/// What backs large allocations, for the output rows: the system's THP mode
/// and whether this process advises, e.g. `madvise, advised`,
/// `always, advised`, `never`, `madvise, off (TERNBENCH_HUGE_PAGES)`.
pub fn status() -> String {
    let system = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .ok()
        .and_then(|s| selected_mode(&s).map(str::to_string));
    let Some(system) = system else {
        return "unavailable".into();
    };
    if system == "never" {
        return system;
    }
    match MODE.load(Ordering::Relaxed) {
        ADVISED => format!("{system}, advised"),
        OFF => format!("{system}, off (TERNBENCH_HUGE_PAGES)"),
        _ => format!("{system}, not advised"),
    }
}

/// The bracketed entry of a sysfs mode list, e.g. "always [madvise] never".
fn selected_mode(list: &str) -> Option<&str> {
    let start = list.find('[')? + 1;
    let len = list[start..].find(']')?;
    Some(&list[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_mode_lists_parse() {
        assert_eq!(selected_mode("always [madvise] never\n"), Some("madvise"));
        assert_eq!(selected_mode("[always] madvise never"), Some("always"));
        assert_eq!(selected_mode("always madvise never"), None);
        assert_eq!(selected_mode("[broken"), None);
    }

    #[test]
    fn allocations_keep_their_contents_across_size_classes() {
        let a = HugePageAlloc;
        for (from, to) in [
            (100, 3 << 20),
            (3 << 20, 5 << 20),
            (5 << 20, 100),
            (64, 4096),
        ] {
            let layout = Layout::from_size_align(from, 8).unwrap();
            // SAFETY: non-zero sizes; every pointer is used within its
            // allocation and freed once with its own layout.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                if from >= HUGE_PAGE {
                    assert_eq!(p as usize % HUGE_PAGE, 0);
                }
                for i in 0..from {
                    *p.add(i) = i as u8;
                }
                let q = a.realloc(p, layout, to);
                assert!(!q.is_null());
                for i in 0..from.min(to) {
                    assert_eq!(*q.add(i), i as u8, "{from} -> {to}, byte {i}");
                }
                a.dealloc(q, Layout::from_size_align(to, 8).unwrap());
            }
        }
        let z = Layout::from_size_align(HUGE_PAGE + 1, 64).unwrap();
        // SAFETY: as above.
        unsafe {
            let p = a.alloc_zeroed(z);
            assert!((0..z.size()).step_by(4093).all(|i| *p.add(i) == 0));
            a.dealloc(p, z);
        }
    }
}
