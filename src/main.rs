//! `sigsweep`: the command line ([`sigsweep::main`]), with mimalloc as the
//! allocator.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h (the same index in mimalloc 2 and
/// 3; the test below reads its default through it).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc's purge delay, in milliseconds. mimalloc does not return a
/// block to the OS that long after *it* was freed: the first free of a
/// cycle arms a timer, and when it fires everything free at that moment is
/// purged, however recently it was freed. A training step frees its
/// activations and gradients and the next step allocates them again, so
/// each purge costs the next step a page fault and a cleared page (a
/// transparent huge page of 2 MiB where the kernel grants them) for all of
/// that memory. With mimalloc's 1 s that was about 8 % of an FD-CMDIE epoch
/// (380 000 page faults in two epochs of the 128-sample bench file); with
/// 10 s still 44 000 faults and 10 % of a full-size epoch on a machine with
/// transparent huge pages; with 60 s 1 300, as with purging off. A worker's
/// memory still goes back to the OS within about a minute of a trial's
/// end. `MIMALLOC_PURGE_DELAY` in the environment wins.
const KEEP_FREED_MS: std::ffi::c_long = 60_000;

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    sigsweep::main()
}

fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads its options
        // atomically and allows setting them at any time.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, KEEP_FREED_MS)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option index is mimalloc's purge delay: before it is set it
    /// reads mimalloc 3's default of 1 000 ms, afterwards ours.
    #[test]
    fn purge_delay_option_is_the_one_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        #[allow(unsafe_code)]
        // SAFETY: reads one integer option.
        let get = || unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(get(), 1000, "mimalloc's default purge delay");
        keep_freed_memory();
        assert_eq!(get(), KEEP_FREED_MS);
    }
}
