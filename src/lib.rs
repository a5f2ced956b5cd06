//! The `sigsweep` command-line tool: it parses, calls a library, prints.
//!
//! - [`cli`]: the clap definitions (flags, their `SIGSWEEP_…` environment
//!   variables, help texts);
//! - [`config`]: layered settings of the coordinator and the worker
//!   (defaults, `--config` file, environment, flags), resolved into the
//!   libraries' `NodeConfig` and `AgentConfig`;
//! - [`commands`]: one module per subcommand; no command imports another;
//! - [`local`]: a sweep on this machine (`run`, `confirm`);
//! - [`steps`]: what several commands share (a sweep file, a coordinator's
//!   API, the progress bar);
//! - [`logging`], [`signals`]: tracing-subscriber set-up; shutdown on the
//!   first signal, exit on the second.

pub mod cli;
pub mod commands;
pub mod config;
pub mod local;
pub mod logging;
pub mod signals;
pub mod steps;

/// The whole command line: parses the arguments, installs logging and runs
/// the command. `src/main.rs` is this; a binary that adds its own models
/// (`sigsweep_worker::models::register`, `examples/custom-burn-model`)
/// registers them and calls it.
pub fn main() -> std::process::ExitCode {
    use clap::Parser;
    let cli = cli::Cli::parse();
    logging::init(cli.log_format, cli.verbose);
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
