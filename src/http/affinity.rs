//! Which CPUs the event loops run on ([`PinLoops`]), and the one exception: a loop moving a
//! large file may run on any of them while it does.
//!
//! Pinned, two loops never share a core, which keeps small requests' answers from waiting
//! for one. But a loop streaming a large file competes for CPU with whatever receives the
//! bytes on the same machine (a client, or a proxy in front of burnlink). Each wake-up of
//! the receiver pulls it onto the waker's core, and a pinned loop cannot move away: with
//! `curl` on loopback the two shared one core in nearly every sample, and a 1 GiB download
//! ran at about 0.95 of the unpinned speed (docs/benchmarks.md, "The eighth performance
//! pass").

use std::cell::Cell;
use std::sync::OnceLock;

use crate::config::PinLoops;

/// From this size a transfer releases its loop's pin while it runs: at the 2.3-3.3 GB/s of
/// this pass's 1 GiB downloads it keeps the loop busy for 2.5-3.6 ms or more, where a small
/// download takes microseconds.
pub const LARGE: u64 = 8 * 1024 * 1024;

thread_local! {
    /// This thread's CPU, if it is a pinned event loop.
    static PIN: Cell<Option<usize>> = const { Cell::new(None) };
    /// Large transfers running on this loop; the pin is back when the last one ends.
    static RELEASED: Cell<u32> = const { Cell::new(0) };
}

/// The CPUs this process may run on, in order, as read the first time: at start-up, before
/// any loop pins itself (a pinned thread would read its one CPU). Empty if the kernel would
/// not say.
pub fn process_cpus() -> &'static [usize] {
    static CPUS: OnceLock<Vec<usize>> = OnceLock::new();
    CPUS.get_or_init(|| {
        use rustix::thread::{CpuSet, sched_getaffinity};
        match sched_getaffinity(None) {
            Ok(set) => (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the CPUs this process may use; event loops not pinned");
                Vec::new()
            }
        }
    })
}

/// Which CPU each of `loops` event loops is held to, given the CPUs the process may use.
pub fn placement(loops: usize, allowed: &[usize], pin: PinLoops) -> Vec<Option<usize>> {
    let pinned = match pin {
        PinLoops::Off => false,
        PinLoops::Auto => loops == allowed.len(),
        PinLoops::On => !allowed.is_empty(),
    };
    (0..loops)
        .map(|i| pinned.then(|| allowed[i % allowed.len()]))
        .collect()
}

/// Holds the calling thread to `cpu`. A refusal (a CPU taken away since start-up, a sandbox
/// that forbids the call) leaves the loop where the scheduler puts it: slower at worst.
pub fn pin_this_thread(cpu: usize) {
    match set_cpus(&[cpu]) {
        Ok(()) => PIN.set(Some(cpu)),
        Err(e) => {
            tracing::warn!(cpu, error = %e, "could not pin an event loop to its CPU; it runs unpinned")
        }
    }
}

fn set_cpus(cpus: &[usize]) -> rustix::io::Result<()> {
    use rustix::thread::{CpuSet, sched_setaffinity};
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu);
    }
    sched_setaffinity(None, &set)
}

/// Held while a large transfer runs on this thread: a pinned loop may run on any CPU the
/// process may use until the last such transfer on it ends. Nothing on an unpinned thread.
/// Made and dropped on the same thread: a loop's tasks never leave it.
pub struct Released(bool);

impl Released {
    /// For a transfer of `len` bytes.
    pub fn for_len(len: u64) -> Released {
        if len < LARGE || PIN.get().is_none() {
            return Released(false);
        }
        if RELEASED.get() == 0 && set_cpus(process_cpus()).is_err() {
            return Released(false);
        }
        RELEASED.set(RELEASED.get() + 1);
        Released(true)
    }
}

impl Drop for Released {
    fn drop(&mut self) {
        if !self.0 {
            return;
        }
        RELEASED.set(RELEASED.get() - 1);
        if RELEASED.get() == 0
            && let Some(cpu) = PIN.get()
        {
            // A refusal leaves the loop free to run anywhere: slower small requests, no harm.
            let _ = set_cpus(&[cpu]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_pins_only_when_the_loops_match_the_cpus_the_process_may_use() {
        // A container given CPUs 2 and 5: one loop on each.
        assert_eq!(placement(2, &[2, 5], PinLoops::Auto), [Some(2), Some(5)]);
        // A CPU quota below the CPUs in the mask (one loop on a 4-CPU node): left to the
        // scheduler, as with more loops than CPUs.
        assert_eq!(placement(1, &[0, 1, 2, 3], PinLoops::Auto), [None]);
        assert_eq!(placement(3, &[0, 1], PinLoops::Auto), [None, None, None]);
        // The mask unknown: nothing to pin to.
        assert_eq!(placement(2, &[], PinLoops::Auto), [None, None]);
    }

    #[test]
    fn on_wraps_around_the_cpus_and_off_pins_nothing() {
        assert_eq!(
            placement(3, &[0, 1], PinLoops::On),
            [Some(0), Some(1), Some(0)]
        );
        assert_eq!(placement(2, &[], PinLoops::On), [None, None]);
        assert_eq!(placement(2, &[0, 1], PinLoops::Off), [None, None]);
    }
}
