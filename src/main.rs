//! The `nas` binary: parse flags, run, and map errors to exit codes in one place.

use clap::Parser;

fn main() {
    let cli = nas::cli::Cli::try_parse().unwrap_or_else(|e| match nas::cli::flag_error(&e) {
        Some(line) => {
            eprintln!("nas: error: {line}");
            std::process::exit(2);
        }
        // --help, --version and a bare `nas` print clap's own text.
        None => e.exit(),
    });
    if let Err(e) = nas::cli::run(cli) {
        eprintln!("nas: error: {e}");
        std::process::exit(e.exit_code());
    }
}
