//! The C allocator's settings for a process that holds a record per file
//! (glibc only; elsewhere these do nothing). See docs/decisions.md,
//! "Issue 14, session 8: memory toward a million files".

/// Allocations from this size up get their own mapping, returned to the
/// system when freed. glibc otherwise raises this threshold to the size of
/// any mapped block freed (up to 32 MiB), after which a growing per-file
/// vector (a switch's changes and steps) is copied from heap block to heap
/// block and every old block stays resident: a first switch of 100k files
/// peaked at 70 MiB of heap, 51 MiB with a fixed threshold. 4 MiB keeps the
/// per-file buffers of reads and writes (up to 1 MiB or so) on the heap,
/// where freeing and reusing them costs no system call.
const MMAP_THRESHOLD: i32 = 4 << 20;

/// Sets the allocator up for sysgen's commands; the binary calls it first.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's parameters; called
    // before any thread starts, it races with no allocation.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Returns the pages of memory freed so far to the system. A build frees
/// an entry per file when it returns, but the allocator keeps those pages
/// (spread over one arena per hashing thread) and a `switch CONFIG` then
/// plans its own entry per file beside them: 134 MiB at 100k files where
/// the build alone peaked at 87 and the switch alone at 96.
pub(crate) fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own
    // arenas; it touches no live allocation and may run at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
