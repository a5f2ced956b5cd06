//! Opt-in accounting of the CPU backend's matrix products: how many
//! floating-point operations the products of a training pass do and how
//! long they take, to read an epoch against the machine's product
//! throughput (`sigsweep bench train --count-products`).
//!
//! Every product of the CPU nodes goes through [`timed`]: the linear
//! layers and the recurrent cells ([`super::cpu::gemm`]) and the attention
//! node ([`super::attention`]). burn's own matrix product, used where no
//! CPU node exists (MM-DFN's graph propagation, CUDA), is not counted.
//!
//! Counting is per thread (the nodes run their products on the thread that
//! runs the graph) and off until [`start`]: off, a product costs one
//! thread-local read more.

use std::cell::Cell;
use std::time::Instant;

/// Which products a count covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The attention node's per-head products.
    Attention,
    /// Everything else ([`super::cpu::gemm`]).
    Other,
}

/// Floating-point operations (a multiply-add is two) and nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub flop: u64,
    pub nanos: u64,
}

impl Count {
    fn since(self, earlier: Count) -> Count {
        Count {
            flop: self.flop.saturating_sub(earlier.flop),
            nanos: self.nanos.saturating_sub(earlier.nanos),
        }
    }

    fn plus(self, other: Count) -> Count {
        Count {
            flop: self.flop.saturating_add(other.flop),
            nanos: self.nanos.saturating_add(other.nanos),
        }
    }

    /// Seconds.
    pub fn seconds(&self) -> f64 {
        self.nanos as f64 * 1e-9
    }
}

/// The counts of one thread since [`start`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub attention: Count,
    pub other: Count,
}

impl Counts {
    pub fn total(&self) -> Count {
        self.attention.plus(self.other)
    }

    /// What was counted between `earlier` and `self`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            attention: self.attention.since(earlier.attention),
            other: self.other.since(earlier.other),
        }
    }

    fn add(&mut self, kind: Kind, count: Count) {
        let slot = match kind {
            Kind::Attention => &mut self.attention,
            Kind::Other => &mut self.other,
        };
        *slot = slot.plus(count);
    }
}

thread_local! {
    static COUNTS: Cell<Option<Counts>> = const { Cell::new(None) };
}

/// Starts counting this thread's products from zero.
pub fn start() {
    COUNTS.set(Some(Counts::default()));
}

/// This thread's counts so far (`None`: not counting).
pub fn current() -> Option<Counts> {
    COUNTS.get()
}

/// Stops counting; returns the counts.
pub fn stop() -> Option<Counts> {
    COUNTS.take()
}

/// `product()`, an `m × k` by `k × n` product, counted when this thread
/// counts.
#[inline(always)]
pub fn timed<R>(kind: Kind, (m, k, n): (usize, usize, usize), product: impl FnOnce() -> R) -> R {
    if COUNTS.get().is_none() {
        return product();
    }
    let start = Instant::now();
    let out = product();
    let count = Count {
        flop: 2 * (m as u64) * (k as u64) * (n as u64),
        nanos: u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
    };
    COUNTS.with(|c| {
        if let Some(mut counts) = c.get() {
            counts.add(kind, count);
            c.set(Some(counts));
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_between_start_and_stop_and_only_this_thread() {
        timed(Kind::Other, (2, 3, 4), || ());
        assert_eq!(current(), None);
        start();
        timed(Kind::Other, (2, 3, 4), || ());
        timed(Kind::Attention, (5, 16, 7), || ());
        timed(Kind::Other, (1, 1, 1), || ());
        std::thread::spawn(|| timed(Kind::Other, (100, 100, 100), || ()))
            .join()
            .expect("the other thread");
        let mid = current().expect("counting");
        assert_eq!(mid.other.flop, 2 * 24 + 2);
        assert_eq!(mid.attention.flop, 2 * 5 * 16 * 7);
        assert_eq!(mid.total().flop, 2 * 24 + 2 + 2 * 560);
        timed(Kind::Attention, (1, 2, 3), || ());
        let end = stop().expect("counting");
        assert_eq!(end.since(&mid).attention.flop, 12);
        assert_eq!(end.since(&mid).other, Count::default());
        assert_eq!(current(), None);
    }
}
