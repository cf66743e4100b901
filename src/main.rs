fn main() -> std::process::ExitCode {
    return_large_buffers_to_the_system();
    burnlink::cli::main()
}

/// Makes glibc's allocator give buffers of 64 KiB and more straight back to the system when
/// they are freed. Streaming buffers (hyper's read buffers, whose chunks make a bucket upload's
/// parts; file and archive chunks) are allocated on one thread and freed on another, a part at
/// a time; with glibc's default, which raises its mmap threshold to the largest block freed so
/// far, those buffers move into the per-thread heaps, and their freed space stays resident
/// there. A 256 MiB upload into a bucket peaked at 56–63 MiB of RSS with the default and at
/// 49.6–49.9 MiB with this (the debug build, the suite's test; docs/benchmarks.md). Setting
/// the threshold also turns off the default's raising of it. A no-op on other C libraries.
/// Here rather than in the library, which forbids `unsafe`: it is process set-up, done once
/// before any thread exists.
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const THRESHOLD: libc::c_int = 64 * 1024;
        // SAFETY: mallopt only sets the allocator's parameters, before any other thread
        // exists. It fails only for a value out of range, and then the defaults stay.
        let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) };
    }
}
