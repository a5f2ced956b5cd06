//! `custom-sigsweep`: the `sigsweep` command line with one more model,
//! `linear-probe` ([`probe`]). Everything else (run, worker, coordinator,
//! report…) is sigsweep's own; `sigsweep run` starts its workers from this
//! binary, so they train the new model too.
//!
//!     cargo run --release -p sigsweep-example-custom-model -- run examples/custom-burn-model/sweep.toml

mod probe;

fn main() -> std::process::ExitCode {
    // Register before anything parses a sweep file or starts a worker.
    if let Err(e) = sigsweep_worker::models::register(probe::extension()) {
        eprintln!("error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    sigsweep::main()
}
