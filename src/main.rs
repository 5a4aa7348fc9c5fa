//! `diskguard`: parse the command line, run the command, exit with a code systemd can act on.

use std::process::ExitCode;

use clap::Parser;
use diskguard::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("diskguard: {}", diskguard::error::chain(&e));
            ExitCode::from(e.exit_code())
        }
    }
}
