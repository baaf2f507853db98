//! The `nas` binary: parse flags, run, and map errors to exit codes in one place.

use clap::Parser;

fn main() {
    let cli = nas::cli::Cli::parse();
    if let Err(e) = nas::cli::run(cli) {
        eprintln!("nas: error: {e}");
        std::process::exit(e.exit_code());
    }
}
