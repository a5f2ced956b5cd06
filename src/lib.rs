//! The `sigsweep` command-line tool: every subcommand's logic, so that
//! `main.rs` stays thin and tests can call commands directly.
//!
//! - [`cli`]: the clap definitions (flags, their `SIGSWEEP_…` environment
//!   variables, help texts);
//! - [`commands`]: one module per subcommand (`run`, `worker`, `coordinator`,
//!   `report`, `stats`, `data`, the remote client commands);
//! - [`logging`]: tracing-subscriber set-up (text or JSON).

pub mod cli;
pub mod commands;
pub mod logging;
