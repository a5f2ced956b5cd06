//! The test harness of the root package's tests: `sigsweep-testkit`, plus
//! the path of the binary under test.

// Each test binary uses a part of it.
#![allow(unused_imports, dead_code)]

pub use sigsweep_testkit::{etcd, fixture};

pub mod cluster;
pub mod local;
pub mod netns;

pub mod proc {
    pub use sigsweep_testkit::free_port;
    pub use sigsweep_testkit::proc::*;

    /// The `sigsweep` binary under test.
    pub const BIN: &str = env!("CARGO_BIN_EXE_sigsweep");
}
