//! The command line (clap derive) and the commands it runs.

mod commands;
mod doctor;
mod ecs;
mod error;
mod prune;
mod status;
pub mod userdata;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use commands::run;
pub use error::Error;

/// Keeps ECS container instances alive when Docker's or etcd's disk fills up.
#[derive(Debug, Parser)]
#[command(name = "diskguard", version = crate::version::VERSION, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file [default: /etc/diskguard/diskguard.toml; a missing default file
    /// means all defaults].
    #[arg(long, global = true, env = "DISKGUARD_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: sample, decide, act and report until SIGTERM.
    Run {
        /// Decide and report, but never remove or drain anything (same as mode = "observe").
        #[arg(long)]
        observe: bool,
    },
    /// Take one sample and show the plan the policy would make now.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One reclaim pass down to prune_target (whatever the level), in the ladder's order.
    Prune {
        /// List what would be removed, with its rung and bytes, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Set this ECS container instance DRAINING, with diskguard's ownership mark.
    Drain,
    /// Set this ECS container instance ACTIVE again — only if diskguard drained it.
    Undrain {
        /// Also when someone else drained it (no diskguard.drained-at attribute).
        #[arg(long)]
        force: bool,
    },
    /// Health check for scripts: exit 0 ok, 1 warning (≥ prune_start, or etcd's quota at
    /// quota_warn_percent), 2 critical (≥ drain, or etcd's NOSPACE alarm), 3 unknown (a
    /// watched path or etcd cannot be read).
    Check,
    /// Audit this host for the bad defaults that cause outages: exit 0 clean, 1 findings.
    Doctor {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Render EC2 user data (Flatcar cloud-config or Ignition, Amazon Linux 2023 cloud-init)
    /// that installs diskguard from its release tarball, checks the tarball's sha256 before
    /// anything starts, and starts diskguard.service. --config FILE is installed as
    /// /etc/diskguard/diskguard.toml.
    #[command(
        after_help = "Exit 0 with the user data on stdout; 78 (EX_CONFIG) when \
        --cluster, --release-url or --sha256 is not valid, the --config file is not, or a \
        --part file is not a part cloud-init knows (nothing is printed then)."
    )]
    Userdata(userdata::UserdataArgs),
    /// Validate the configuration or print the defaults.
    Config {
        #[command(subcommand)]
        action: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration file; exit 78 naming the key when it is wrong.
    Check,
    /// Print the full default configuration as TOML.
    Defaults,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
