//! What each subcommand does, returning the exit code.

use std::io::Write as _;
use std::path::PathBuf;

use super::{Cli, Command, ConfigCommand, Error};
use crate::config::{self, DEFAULT_CONFIG_PATH, Mode};
use crate::daemon::oneshot::{Reads, look, runtime};
use crate::policy::{EtcdVerdict, Level, Plan, QuotaLevel};

/// The configuration file's text, for an ECS task that sets it in its environment.
pub const CONFIG_TOML_ENV: &str = "DISKGUARD_CONFIG_TOML";

/// Runs the command; `Ok` carries the exit code.
pub fn run(cli: Cli) -> Result<u8, Error> {
    let (mut path, explicit) = match cli.config {
        Some(p) => (p, true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    // A task definition can carry the file itself in its environment; a path given with
    // --config or DISKGUARD_CONFIG wins.
    let inline = std::env::var(CONFIG_TOML_ENV)
        .ok()
        .filter(|t| !explicit && !t.trim().is_empty());
    let mut settings = match inline {
        Some(text) => {
            path = PathBuf::from(format!("${CONFIG_TOML_ENV}"));
            config::parse(&path, &text)?
        }
        None => config::load(&path, !explicit)?,
    };
    // A data dir written in the file wins; otherwise etcd's unit says where it is.
    crate::etcd::resolve_data_dir(&mut settings);
    let one_shot = || runtime().map_err(Error::Runtime);
    match cli.command {
        Command::Run { observe } => {
            if observe {
                settings.mode = Mode::Observe;
            }
            crate::daemon::run(settings, &path)?;
            Ok(0)
        }
        Command::Status { json } => {
            print(&one_shot()?.block_on(super::status::status(&settings, json)))?;
            Ok(0)
        }
        Command::Prune { dry_run } => {
            let (text, code) = one_shot()?.block_on(super::prune::prune(&settings, dry_run))?;
            print(&text)?;
            Ok(code)
        }
        Command::Drain => {
            print(&one_shot()?.block_on(super::ecs::drain(&settings))?)?;
            Ok(0)
        }
        Command::Undrain { force } => {
            print(&one_shot()?.block_on(super::ecs::undrain(&settings, force))?)?;
            Ok(0)
        }
        Command::Check => {
            let shot = one_shot()?.block_on(look(
                &settings,
                Reads {
                    docker: false,
                    ecs: true,
                    etcd: true,
                },
            ));
            let (code, word) = check_code(&shot.plan);
            let mut detail: Vec<String> = shot
                .plan
                .volumes
                .iter()
                .map(|v| match &v.error {
                    Some(e) => format!("{}: {e}", v.volume),
                    None => format!("{} {:.1}% ({})", v.volume, v.usage_percent, v.level),
                })
                .chain(shot.plan.etcd.as_ref().map(etcd_detail))
                .collect();
            // The instance's ECS state, when it could be had; it never changes the code.
            if let Some(view) = &shot.snapshot.ecs {
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
        Command::Doctor { json } => {
            let (text, code) = one_shot()?.block_on(super::doctor::doctor(&settings, json));
            print(&text)?;
            Ok(code)
        }
        Command::Userdata(args) => {
            print(&super::userdata::render(
                &args,
                explicit.then_some(path.as_path()),
            )?)?;
            Ok(0)
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

/// etcd's quota for `check`: `etcd quota 103.5% (critical) NOSPACE, on Docker's filesystem`.
fn etcd_detail(e: &EtcdVerdict) -> String {
    let fs = match e.shares_docker_fs {
        Some(true) => ", on Docker's filesystem",
        Some(false) => ", on its own filesystem",
        None => "",
    };
    let quota = match (e.quota_level, e.quota_used_percent) {
        (Some(level), Some(p)) => {
            let (word, alarm) = match level {
                QuotaLevel::Ok => ("ok", ""),
                QuotaLevel::Warn => ("warning", ""),
                QuotaLevel::Critical => ("critical", " NOSPACE"),
            };
            format!("etcd quota {p:.1}% ({word}){alarm}")
        }
        _ => "etcd: cannot be read".to_owned(),
    };
    format!("{quota}{fs}")
}

/// Nagios-style: a known problem outranks an unknown one. etcd's quota counts as a
/// volume would: warn at `quota_warn_percent`, critical on NOSPACE; an etcd that is
/// watched but cannot be read is unknown.
pub fn check_code(plan: &Plan) -> (u8, &'static str) {
    let quota = plan.etcd.as_ref().and_then(|e| e.quota_level);
    let etcd_unknown = plan.etcd.as_ref().is_some_and(|e| !e.readable());
    match (plan.level, quota) {
        (Level::Drain | Level::Critical, _) | (_, Some(QuotaLevel::Critical)) => (2, "CRITICAL"),
        (Level::Prune, _) | (_, Some(QuotaLevel::Warn)) => (1, "WARNING"),
        _ if plan.has_unreadable_volume() || etcd_unknown => (3, "UNKNOWN"),
        _ => (0, "OK"),
    }
}

fn print(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::Output)
}
