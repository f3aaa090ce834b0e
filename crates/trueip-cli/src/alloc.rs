//! The global allocator: mimalloc, entered through its plain functions whenever they
//! already give the alignment asked for.
//!
//! Why ours and not `mimalloc::MiMalloc`: that type calls `mi_malloc_aligned` for every
//! allocation. mimalloc v3 serves an aligned call from the ordinary free list only while
//! the size class has a free block at hand; when it has none, a block size that is not a
//! power of two goes to the over-allocating generic path — a larger size class — and the
//! blocks later freed into the first class are never picked up again by aligned calls.
//! So every request's non-power-of-two buffers (the whoami page's steps and chain) took
//! the slow path, every time: about 250 instructions a page, measured under callgrind.
//! The same is reported upstream (purpleprotocol/mimalloc_rust#170).
//!
//! When plain `mi_malloc` suffices: on 64-bit targets mimalloc rounds every block above
//! 8 bytes to a multiple of 16 and starts each page's first block on 16 bytes, so a
//! block is 16-aligned when larger than 8 bytes and 8-aligned otherwise — the C
//! standard's guarantee, and the rule the standard library's `System` allocator applies
//! to `malloc` (`align <= 16 && align <= size`). Anything else keeps the aligned calls.
//! The test below holds the rule to every layout a program is likely to ask for.

#![allow(
    unsafe_code,
    reason = "a global allocator is unsafe by contract; this module is its only unsafe code"
)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The largest alignment a plain mimalloc block always has (`MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

/// Whether a plain block of `size` bytes is aligned enough for `align`.
#[inline]
fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

/// mimalloc, through `mi_malloc` where that is aligned enough (see the module docs).
pub(crate) struct Mimalloc;

// SAFETY: every pointer handed out comes from mimalloc with at least `layout.size()`
// bytes and `layout.align()` alignment (plain calls only where `plain` holds, aligned
// calls otherwise), and `mi_free` accepts pointers from every one of these calls.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain FFI allocation calls; a null return is passed on as failure.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator; mimalloc keeps the contents up to the
        // smaller size, and the new block is aligned as `alloc` would align it.
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size up to 4 KiB and past mimalloc's small/medium/large limits, at every
    /// alignment up to a page: the block is aligned, writable over its whole length,
    /// and survives growing and shrinking with its contents.
    #[test]
    fn blocks_are_aligned_and_keep_their_contents() {
        let a = Mimalloc;
        let sizes = (1..=4096).chain([8191, 8192, 65_536, 70_000, 1 << 20, (4 << 20) + 1]);
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: `layout` has a non-zero size; the block is used only within
                // its size and freed once, with its layout.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    std::ptr::write_bytes(p, 0xa5, size);
                    let grown = a.realloc(p, layout, size * 2);
                    assert_eq!(grown as usize % align, 0, "grown {size} align {align}");
                    assert_eq!(*grown.add(size - 1), 0xa5);
                    let bigger = Layout::from_size_align(size * 2, align).unwrap();
                    let shrunk = a.realloc(grown, bigger, size.div_ceil(2));
                    assert_eq!(shrunk as usize % align, 0, "shrunk {size} align {align}");
                    assert_eq!(*shrunk, 0xa5);
                    a.dealloc(shrunk, Layout::from_size_align(size.div_ceil(2), align).unwrap());
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "zeroed {size} align {align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
