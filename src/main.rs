//! `diskguard`: parse the command line, run the command, exit with a code systemd can act on.

use std::process::ExitCode;

use clap::Parser;
use diskguard::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            eprintln!("diskguard: {text}");
            ExitCode::from(e.exit_code())
        }
    }
}
