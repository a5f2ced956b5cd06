//! The `sigsweep` command-line tool: every subcommand's logic, so that
//! `main.rs` stays thin and tests can call commands directly.
//!
//! - [`cli`]: the clap definitions (flags, their `SIGSWEEP_…` environment
//!   variables, help texts);
//! - [`commands`]: one module per subcommand (`run`, `worker`, `coordinator`,
//!   `report`, `stats`, `data`, the remote client commands);
//! - [`config`]: layered configuration of the coordinator and the worker
//!   (defaults, `--config` file, environment, flags);
//! - [`logging`]: tracing-subscriber set-up (text or JSON).

pub mod cli;
pub mod commands;
pub mod config;
pub mod logging;
