//! `sigsweep`: the command line ([`sigsweep::main`]), with mimalloc as the
//! allocator.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sigsweep::main()
}
