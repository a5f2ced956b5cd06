//! `sigsweep`: parses the command line, installs logging and signal
//! handling, and hands over to the library.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = sigsweep::cli::Cli::parse();
    sigsweep::logging::init(cli.log_format, cli.verbose);
    match sigsweep::commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
