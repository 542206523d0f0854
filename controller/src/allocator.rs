//! Tuning of glibc's allocator for a long-running operator that allocates in bursts.
//!
//! The operator's memory comes in waves: a relist, a reload of the spec directory, a status
//! pass (the whole status built and serialized) allocate megabytes that are freed right after.
//! glibc keeps freed memory for reuse, per arena, so the resident size follows the peaks, not
//! what is live. Two knobs bring it back towards what is live: one arena, and handing free
//! pages back after each burst (a status pass, a task poll, a resync). Measured with 500
//! services in round 2: 23 MB resident before, 19.3–19.5 MB after (together with
//! `opt-level = "s"` for this crate, see the workspace's Cargo.toml); the binary's own pages
//! have grown since (controller/BENCHMARK.md, "Parse once, on every core").
//! Pages that still hold a few long-lived objects can't be handed back: the rest is done by not
//! re-allocating long-lived data amid a burst (see "Memory" in docs/architecture.md).

/// Limits malloc to one arena. glibc gives every thread that allocates its own arena (up to 8
/// per core), each keeping its freed memory for itself; the operator allocates little and
/// mostly in bursts on one task at a time, so the lock they would spare is rarely contended.
///
/// Call it first thing in `main`, before any thread exists.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning, and no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Hands the free pages of the heap back to the kernel. Cheap next to the burst it follows (it
/// walks the free lists: well under a millisecond at 500 services).
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim is thread-safe; it only returns unused pages.
    unsafe {
        libc::malloc_trim(0);
    }
}
