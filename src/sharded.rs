//! One value per thread slot, for what both event loops write on every request and only a
//! rare reader sums: the request metrics, the link statistics. A value both cores write moves
//! its cache line between them on every write; kept per thread, 4 KiB downloads were 3-5 %
//! faster (`docs/benchmarks.md`, the fifteenth pass).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// How many slots each value has. Threads take them in turn; two threads sharing a slot still
/// count right (each slot is an atomic or behind a lock), they only write the same line again.
const SLOTS: usize = 8;

/// `T` once per slot; a thread reads and writes its own ([`Sharded::mine`]), a reader sums them
/// all ([`Sharded::all`]).
pub(crate) struct Sharded<T> {
    slots: [Padded<T>; SLOTS],
}

/// A slot on lines of its own: neighbouring 64-byte lines are fetched in pairs, so 128.
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Sharded {
            slots: std::array::from_fn(|_| Padded::default()),
        }
    }
}

impl<T> Sharded<T> {
    /// The calling thread's slot: the same one for every `Sharded` value.
    pub(crate) fn mine(&self) -> &T {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SLOT: usize = NEXT.fetch_add(1, Relaxed) % SLOTS;
        }
        &self.slots[SLOT.with(|s| *s)].0
    }

    /// Every slot, for the reader that sums them.
    pub(crate) fn all(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|s| &s.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn a_thread_keeps_its_slot_and_the_sum_is_whole() {
        let counts: Sharded<AtomicU64> = Sharded::default();
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    let first: *const AtomicU64 = counts.mine();
                    for _ in 0..1000 {
                        assert!(std::ptr::eq(first, counts.mine()));
                        counts.mine().fetch_add(1, Relaxed);
                    }
                });
            }
        });
        assert_eq!(counts.all().map(|c| c.load(Relaxed)).sum::<u64>(), 3000);
        assert_eq!(std::mem::align_of::<Padded<AtomicU64>>(), 128);
    }
}
