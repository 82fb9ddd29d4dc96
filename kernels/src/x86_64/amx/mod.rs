//! AMX kernels (Advanced Matrix Extensions: AMX-TILE + AMX-INT8, Intel
//! Sapphire Rapids and later): eight 1 KiB tile registers and `tdpbusd`,
//! which multiplies a 16 x 64 tile of unsigned bytes by a 64 x 16 tile of
//! signed bytes into a 16 x 16 tile of int32 sums (16384 multiply-adds).
//!
//! Rust has no stable AMX intrinsics, so the tile instructions are `asm!`;
//! no Rust code touches the tile registers, so an `asm!` block may leave
//! them live for the next one. Linux hands out the 8 KiB of tile state per
//! process on request (`arch_prctl(ARCH_REQ_XCOMP_PERM)`): [`detect`] makes
//! that request, and the feature counts as present only when it is granted.
//!
//! Shared here: detection, the tile configuration and the 2 x 2 tile product
//! the kernels are built on ([`dot_2x2`]).

pub mod i2s;

use crate::cpu::CpuFeature;
use std::arch::asm;

/// What the AMX kernels need: AVX-512 (they unpack weights and run small
/// batches with it) and AMX-INT8.
pub(crate) const FEATURES: &[CpuFeature] =
    &with_feature::<8>(crate::x86_64::avx512::BASE_FEATURES, CpuFeature::AmxInt8);

/// `base` followed by `extra`, as an array of `N = base.len() + 1`.
const fn with_feature<const N: usize>(base: &[CpuFeature], extra: CpuFeature) -> [CpuFeature; N] {
    assert!(base.len() + 1 == N);
    let mut out = [extra; N];
    let mut i = 0;
    while i < base.len() {
        out[i] = base[i];
        i += 1;
    }
    out
}

/// Bytes of one tile: 16 rows of 64 bytes.
pub(crate) const TILE_BYTES: usize = 1024;
/// Rows (weight rows, or tokens) per tile.
pub(crate) const TILE_ROWS: usize = 16;
/// Bytes of K per tile row (64 int8 values; 16 groups of 4 in the B tile).
pub(crate) const TILE_K: usize = 64;

/// Whether this CPU has AMX-TILE and AMX-INT8 and the OS lets this process
/// use the tile state (run once, through [`crate::cpu::features`]).
pub(crate) fn detect() -> bool {
    // CPUID.(EAX=7,ECX=0):EDX bit 24 is AMX-TILE, bit 25 AMX-INT8.
    // SAFETY: CPUID exists on every x86-64 CPU.
    #[allow(unused_unsafe)]
    let leaf7 = unsafe { core::arch::x86_64::__cpuid_count(7, 0) };
    if leaf7.edx >> 24 & 3 != 3 || !std::arch::is_x86_feature_detected!("xsave") {
        return false;
    }
    // XCR0 bits 17 (XTILECFG) and 18 (XTILEDATA): the OS saves tile state.
    // SAFETY: XGETBV is available: the CPU has XSAVE and the OS enabled it
    // (is_x86_feature_detected checks OSXSAVE).
    let xcr0 = unsafe { xcr0() };
    xcr0 >> 17 & 3 == 3 && request_tile_permission()
}

/// # Safety
/// The CPU must have XSAVE enabled by the OS.
#[target_feature(enable = "xsave")]
unsafe fn xcr0() -> u64 {
    // SAFETY: the caller guarantees XGETBV exists.
    unsafe { core::arch::x86_64::_xgetbv(0) }
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: without it the
/// first tile instruction of the process faults (Linux 5.16 and later).
#[cfg(target_os = "linux")]
fn request_tile_permission() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a system call that only changes which xsave components this
    // process may use; it reads and writes no memory of ours. `syscall`
    // clobbers rcx and r11.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_permission() -> bool {
    false
}

/// Palette 1 with all eight tiles 16 rows x 64 bytes (the `ldtilecfg` layout).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

static FULL_TILES: TileConfig = {
    let mut c = [0u8; 64];
    c[0] = 1; // palette
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = TILE_K as u8; // bytes per row (u16, little-endian)
        c[48 + t] = TILE_ROWS as u8; // rows
        t += 1;
    }
    TileConfig(c)
};

/// Configures this thread's tiles for [`dot_2x2`]; [`release_tiles`] undoes it.
///
/// # Safety
/// The CPU must have AMX-TILE and the process its permission ([`detect`]).
pub(crate) unsafe fn configure_tiles() {
    // SAFETY: the config is 64 valid bytes (palette 1 takes 16 x 64 tiles);
    // the caller guarantees AMX.
    unsafe { asm!("ldtilecfg [{0}]", in(reg) FULL_TILES.0.as_ptr(), options(nostack)) };
}

/// Returns the tiles to their initial state (so the OS need not save them).
///
/// # Safety
/// The CPU must have AMX-TILE and the process its permission ([`detect`]).
pub(crate) unsafe fn release_tiles() {
    // SAFETY: the caller guarantees AMX.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// c[2i + j] = sum over `steps` of A_i(s) B_j(s): four 16 x 16 int32 tiles
/// (row m, column n at `c[2i + j][16m + n]`), where A_i(s) is the 1 KiB tile
/// at `a[i] + s * 1024` (16 rows of 64 unsigned bytes) and B_j(s) the one at
/// `b[j] + s * 1024` (16 groups of 4 K values x 16 columns: byte 64g + 4n + e
/// is element 4g + e of column n). Two A and two B tiles are loaded per step
/// for four `tdpbusd`, the most reuse eight tile registers allow.
///
/// `between(s)` runs after step s is issued: the tile unit works through
/// the step's products while the core runs it (kernels unpack the next
/// weights there).
///
/// # Safety
/// [`configure_tiles`] must have run on this thread; `steps >= 1` and every
/// pointer must be readable for `steps * 1024` bytes.
#[inline(always)]
pub(crate) unsafe fn dot_2x2(
    a: [*const u8; 2],
    b: [*const i8; 2],
    steps: usize,
    c: &mut [[i32; 256]; 4],
    mut between: impl FnMut(usize),
) {
    // SAFETY: tiles configured (caller).
    unsafe {
        asm!(
            "tilezero tmm4",
            "tilezero tmm5",
            "tilezero tmm6",
            "tilezero tmm7",
            options(nostack, nomem)
        )
    };
    for s in 0..steps {
        // SAFETY: the caller guarantees the tile configuration and that
        // tile s of each pointer is readable.
        unsafe {
            asm!(
                "tileloadd tmm0, [{a0} + {row}*1]",
                "tileloadd tmm2, [{b0} + {row}*1]",
                "tdpbusd tmm4, tmm0, tmm2",
                "tileloadd tmm3, [{b1} + {row}*1]",
                "tdpbusd tmm5, tmm0, tmm3",
                "tileloadd tmm1, [{a1} + {row}*1]",
                "tdpbusd tmm6, tmm1, tmm2",
                "tdpbusd tmm7, tmm1, tmm3",
                a0 = in(reg) a[0].add(s * TILE_BYTES),
                a1 = in(reg) a[1].add(s * TILE_BYTES),
                b0 = in(reg) b[0].add(s * TILE_BYTES),
                b1 = in(reg) b[1].add(s * TILE_BYTES),
                row = in(reg) TILE_K,
                options(nostack, readonly),
            );
        }
        between(s);
    }
    // SAFETY: the stores write exactly the 4 KiB of `c` (64-byte rows, 16
    // per tile).
    unsafe {
        asm!(
            "tilestored [{c} + {row}*1], tmm4",
            "tilestored [{c} + {row}*1 + 1024], tmm5",
            "tilestored [{c} + {row}*1 + 2048], tmm6",
            "tilestored [{c} + {row}*1 + 3072], tmm7",
            c = in(reg) c.as_mut_ptr(),
            row = in(reg) TILE_K,
            options(nostack),
        );
    }
}

/// The compute-roof body: `iters` rounds of four independent `tdpbusd`
/// (tiles of 2s times tiles of -3s, no loads in the loop); returns the sum
/// of element 0 of the four accumulators (-1536 per round).
///
/// # Safety
/// The CPU must have AMX-INT8 and the process its permission ([`detect`]).
pub(crate) unsafe fn tdpbusd_rounds(iters: u64) -> u64 {
    #[repr(C, align(64))]
    struct Tiles([u8; 2 * TILE_BYTES]);
    let mut ab = Tiles([2; 2 * TILE_BYTES]);
    ab.0[TILE_BYTES..].fill(-3i8 as u8);
    let mut c = [[0i32; 256]; 4];
    if iters == 0 {
        return 0;
    }
    // SAFETY: the caller guarantees AMX; the loads read the 2 KiB of `ab`,
    // the stores write the 4 KiB of `c`.
    unsafe {
        configure_tiles();
        asm!(
            "tileloadd tmm0, [{ab} + {row}*1]",
            "tileloadd tmm1, [{ab} + {row}*1 + 1024]",
            "tilezero tmm4",
            "tilezero tmm5",
            "tilezero tmm6",
            "tilezero tmm7",
            "2:",
            "tdpbusd tmm4, tmm0, tmm1",
            "tdpbusd tmm5, tmm0, tmm1",
            "tdpbusd tmm6, tmm0, tmm1",
            "tdpbusd tmm7, tmm0, tmm1",
            "dec {n}",
            "jnz 2b",
            "tilestored [{c} + {row}*1], tmm4",
            "tilestored [{c} + {row}*1 + 1024], tmm5",
            "tilestored [{c} + {row}*1 + 2048], tmm6",
            "tilestored [{c} + {row}*1 + 3072], tmm7",
            ab = in(reg) ab.0.as_ptr(),
            c = in(reg) c.as_mut_ptr(),
            n = inout(reg) iters => _,
            row = in(reg) TILE_K,
            options(nostack),
        );
        release_tiles();
    }
    c.iter().map(|t| t[0] as i64).sum::<i64>() as u64
}
