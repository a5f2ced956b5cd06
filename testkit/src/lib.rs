//! The test harness (dev-only): real parts for tests, never mocks.
//!
//! - [`etcd`]: a real single-node etcd (Debian's `etcd-server`) on free
//!   loopback ports with a temporary data directory, optionally over TLS
//!   with a throw-away PKI ([`etcd::TestPki`]);
//! - [`proc`]: child processes (the `sigsweep` binary) with their output in
//!   a log file shown when an assertion fails, SIGKILLed on drop;
//! - [`fixture`]: the tiny late-fusion sweep most end-to-end tests run;
//! - [`node`]: an in-process coordinator served on a free loopback port.

pub mod etcd;
pub mod fixture;
pub mod node;
pub mod proc;

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}
