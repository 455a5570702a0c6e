//! How the `burn-qat` process asks glibc's allocator to treat large buffers.
//!
//! A training step allocates and frees the same large activations and gradients (megabytes
//! each) every step. By default glibc serves such buffers with a fresh `mmap` and unmaps them
//! on free (and trims the heap top back to the OS), so every step pays a page fault per 4 KiB
//! page it touches again: 8% of a `convbnrelu2d` step on the development machine. Raising the
//! mmap threshold to its maximum (32 MiB on 64-bit glibc) and the trim threshold keeps freed
//! memory in the process for the next step, as PyTorch's CUDA caching allocator does on the
//! GPU. Peak memory in use is unchanged; memory is returned to the OS when the process ends.
//! A library cannot make this choice for its host program, so only the binary does.

/// Applies the policy; a no-op where the allocator is not glibc's.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // From glibc's <malloc.h>.
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only sets allocator parameters; it is called before any other thread
        // exists. A rejected value leaves glibc's default, which is only slower.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}
