//! The process's heap (glibc's allocator). A payout batch over 100,000 rewards builds its plan,
//! its lines and a 30 MB JSON reply, and frees them all at once; by default glibc keeps such
//! memory (raising its mmap threshold to the size of the first large block freed, so later
//! large replies come from the heap, and trimming only the top of each arena), and the server
//! stayed at 120–150 MB after one batch. Elsewhere (musl, other systems) both are no-ops.

/// At start: blocks of 256 KiB and more are mapped on their own and unmapped when freed (a
/// fixed threshold, which glibc then never raises), and an arena's free top is given back
/// above 1 MiB.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called once at start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
    }
}

/// After a request that freed a lot (a payout batch): gives every arena's free pages back to
/// the system, not only their tops. Takes a few milliseconds; not for every request.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only releases memory no allocation holds.
    unsafe {
        libc::malloc_trim(0);
    }
}
