//! What each subcommand does, returning the exit code.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::SystemTime;

use super::{Cli, Command, ConfigCommand};
use crate::config::{self, DEFAULT_CONFIG_PATH, Mode, Settings};
use crate::error::Error;
use crate::policy::{Level, Plan, State, decide};
use crate::sample::{FsSampler, History};

/// Runs the command; `Ok` carries the exit code.
pub fn run(cli: Cli) -> Result<u8, Error> {
    let (path, explicit) = match cli.config {
        Some(p) => (p, true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    let settings = config::load(&path, !explicit)?;
    match cli.command {
        Command::Run { observe } => {
            let mut settings = settings;
            if observe {
                settings.mode = Mode::Observe;
            }
            crate::daemon::run(settings, &path)?;
            Ok(0)
        }
        Command::Status { json } => {
            print(&super::status::status(&settings, json))?;
            Ok(0)
        }
        Command::Prune { dry_run } => match super::prune::prune(&settings, dry_run) {
            Ok((text, code)) => {
                print(&text)?;
                Ok(code)
            }
            Err(why) => {
                eprintln!("diskguard: prune: {why}");
                Ok(crate::error::EXIT_FAILURE)
            }
        },
        Command::Drain => {
            finish(super::status::one_shot_runtime().block_on(super::ecs::drain(&settings)))
        }
        Command::Undrain { force } => finish(
            super::status::one_shot_runtime().block_on(super::ecs::undrain(&settings, force)),
        ),
        Command::Check => {
            let (_, plan) = sample_once(&settings);
            let (code, word) = check_code(&plan);
            let detail: Vec<String> = plan
                .volumes
                .iter()
                .map(|v| match &v.error {
                    Some(e) => format!("{}: {e}", v.volume),
                    None => format!("{} {:.1}% ({})", v.volume, v.usage_percent, v.level),
                })
                .collect();
            // The instance's ECS state, when it can be had quickly; never changes the code.
            let mut detail = detail;
            if let Ok(Some((_, view))) =
                super::status::one_shot_runtime().block_on(super::ecs::connect(&settings))
            {
                detail.push(format!(
                    "ECS {}{}",
                    view.status.as_str(),
                    if view.drained_at.is_some() {
                        " (drained by diskguard)"
                    } else {
                        ""
                    }
                ));
            }
            print(&format!("DISKGUARD {word} - {}\n", detail.join(", ")))?;
            Ok(code)
        }
        Command::Config {
            action: ConfigCommand::Check,
        } => {
            let what = if path.exists() {
                format!("config {}: valid", path.display())
            } else {
                format!(
                    "config {}: no such file, all defaults apply",
                    path.display()
                )
            };
            print(&format!("{what}\n"))?;
            Ok(0)
        }
        Command::Config {
            action: ConfigCommand::Defaults,
        } => {
            print(&config::defaults_toml())?;
            Ok(0)
        }
    }
}

/// One sample and the plan for it, with no history (so no forecast).
fn sample_once(settings: &Settings) -> (crate::sample::Snapshot, Plan) {
    let now = SystemTime::now();
    let snapshot = FsSampler::new(settings).sample(now);
    let history = History::new(
        settings.thresholds.forecast_window,
        settings.sample.interval,
    );
    let plan = decide(&snapshot, &history, &State::default(), settings, now);
    (snapshot, plan)
}

/// Prints a command's output, or its reason for failing on stderr (exit 1).
fn finish(result: Result<(String, u8), String>) -> Result<u8, Error> {
    match result {
        Ok((text, code)) => {
            print(&text)?;
            Ok(code)
        }
        Err(why) => {
            eprintln!("diskguard: {why}");
            Ok(crate::error::EXIT_FAILURE)
        }
    }
}

/// Nagios-style: a known problem outranks an unknown one.
pub fn check_code(plan: &Plan) -> (u8, &'static str) {
    match plan.level {
        Level::Drain | Level::Critical => (2, "CRITICAL"),
        Level::Prune => (1, "WARNING"),
        Level::Ok if plan.has_unreadable_volume() => (3, "UNKNOWN"),
        Level::Ok => (0, "OK"),
    }
}

fn print(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::Output)
}
