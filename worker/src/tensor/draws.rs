//! Where dropout's randomness comes from: per trial, per epoch, per call.
//!
//! A trainer starts every epoch with [`start_epoch`] on its training
//! thread, naming the seeds it trains: one for a trial alone, `K` for a
//! seed-fused model whose activations stack the seeds along their leading
//! axis. Every dropout call of the epoch then takes [`next`]: the `c`-th
//! call gets, for each seed, a value that depends only on that seed, the
//! epoch and `c`. So slice `k` of a fused call draws exactly the masks the
//! seed's own trial draws at that call (the CPU nodes fill each slice's
//! keep flags from its value; elsewhere each slice is drawn after seeding
//! the backend with it), whichever seeds it is fused with, and a trial
//! resumed at an epoch boundary draws what an uninterrupted one draws.
//!
//! Without a started epoch on the thread (a model used outside a trainer,
//! a data-parallel replica's thread), [`next`] returns `None` and dropout
//! draws from the backend's generator, as burn does.

use std::cell::RefCell;

/// The seeds of the epoch in progress on this thread and its calls so far.
#[derive(Debug)]
struct Stream {
    seeds: Vec<u64>,
    calls: u64,
}

thread_local! {
    static STREAM: RefCell<Option<Stream>> = const { RefCell::new(None) };
}

/// SplitMix64 of the pair `(a, b)`: its output function
/// ([`super::cpu::mix64`]) of `a ^ b·γ`.
fn mix(a: u64, b: u64) -> u64 {
    super::cpu::mix64(a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Starts epoch `epoch` (1-based) of the trials of `seeds` on this thread:
/// one seed for a trial alone, the fused seeds in slice order.
pub fn start_epoch(seeds: &[u64], epoch: u32) {
    let seeds = seeds
        .iter()
        .map(|&s| mix(mix(s, 0x0064_726f_706f_7574), u64::from(epoch)))
        .collect();
    STREAM.with(|s| *s.borrow_mut() = Some(Stream { seeds, calls: 0 }));
}

/// The next dropout call's value for every seed of this thread's epoch, in
/// slice order; `None` without a started epoch.
pub fn next() -> Option<Vec<u64>> {
    STREAM.with(|s| {
        let mut s = s.borrow_mut();
        let stream = s.as_mut()?;
        stream.calls += 1;
        let calls = stream.calls;
        Some(stream.seeds.iter().map(|&seed| mix(seed, calls)).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::{next, start_epoch};

    /// A seed's values depend on the seed, the epoch and the call, not on
    /// the seeds beside it; a new epoch starts the calls again.
    #[test]
    fn a_seeds_values_do_not_depend_on_its_neighbours() {
        start_epoch(&[7], 2);
        let alone: Vec<u64> = (0..3).map(|_| next().unwrap_or_default()[0]).collect();
        start_epoch(&[3, 7, 9], 2);
        let fused: Vec<Vec<u64>> = (0..3).map(|_| next().unwrap_or_default()).collect();
        assert_eq!(alone, fused.iter().map(|v| v[1]).collect::<Vec<_>>());
        assert_ne!(fused[0][0], fused[0][1]);
        assert_ne!(alone[0], alone[1]);
        start_epoch(&[7], 3);
        assert_ne!(next().unwrap_or_default()[0], alone[0]);
        start_epoch(&[7], 2);
        assert_eq!(next().unwrap_or_default()[0], alone[0]);
        let elsewhere = std::thread::spawn(next).join().expect("thread");
        assert_eq!(elsewhere, None, "another thread has no stream");
    }
}
