//! Peak heap memory (issue 5: a QAT step should take at most 1.2x the float step's memory).
//!
//! [`PeakAlloc`] is the system allocator plus two counters, bytes in use and their high-water
//! mark. A library cannot install a global allocator for the program that uses it, so the
//! binary opts in:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: burn_qat::bench::memory::PeakAlloc = burn_qat::bench::memory::PeakAlloc::new();
//! ```
//!
//! The counters are process-wide statics rather than fields, so that bench code reaches them
//! without a handle on the binary's static; there can be only one global allocator anyway.
//! Until the allocator serves its first request, [`installed`] is false and the bench omits
//! memory figures instead of reporting zeros.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// [`System`], counting the bytes it hands out. Relaxed atomics: the counts need no ordering
/// with other memory, only no lost updates, and cost a few nanoseconds per allocation.
#[derive(Debug, Default)]
pub struct PeakAlloc;

impl PeakAlloc {
    pub const fn new() -> Self {
        Self
    }

    fn grew(size: usize) {
        let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(now, Ordering::Relaxed);
        if !INSTALLED.load(Ordering::Relaxed) {
            INSTALLED.store(true, Ordering::Relaxed);
        }
    }

    fn shrank(size: usize) {
        CURRENT.fetch_sub(size, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counters only observe sizes.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            Self::grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            Self::grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        Self::shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as the new block arriving before the old one leaves: a moving realloc
            // holds both for a moment.
            Self::grew(new_size);
            Self::shrank(layout.size());
        }
        p
    }
}

/// Whether a [`PeakAlloc`] is the global allocator (it has served a request).
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Heap bytes in use now (0 without [`PeakAlloc`]).
pub fn current_bytes() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// The most heap bytes in use at once since the last [`reset_peak`] (or since start).
pub fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Starts a new high-water mark at the bytes in use now.
pub fn reset_peak() {
    PEAK.store(CURRENT.load(Ordering::Relaxed), Ordering::Relaxed);
}
