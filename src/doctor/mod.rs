//! `diskguard doctor`: the bad defaults that cause outages, audited. The checks are pure
//! functions over what [`read`] gathered (files, filesystems, Docker), so that each one is
//! a unit test; every finding has an id, a one-line problem, a one-line fix and a link.

mod checks;
mod read;

use serde::Serialize;

pub use checks::audit;
pub use read::{FsFacts, Inputs, UnitFacts, read};

/// Where each finding is explained (one section per id).
pub const DOCS: &str = "docs/doctor.md";

/// One bad default found on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable: scripts and the docs refer to it.
    pub id: &'static str,
    pub problem: String,
    pub fix: String,
    /// `docs/doctor.md#<id>`
    pub docs: String,
}

impl Finding {
    pub fn new(id: &'static str, problem: String, fix: String) -> Self {
        Finding {
            id,
            problem,
            fix,
            docs: format!("{DOCS}#{id}"),
        }
    }
}

/// Every id `doctor` can report, in the order they are checked.
pub const IDS: &[&str] = &[
    "docker-log-no-max-size",
    "etcd-shares-docker-fs",
    "docker-root-on-root-fs",
    "ecs-image-cleanup-defaults",
    "ecs-image-cleanup-disabled",
    "ecs-prefer-cached",
    "image-latest-only",
    "container-log-no-limit",
    "inode-headroom-low",
    "diskguard-unit-missing",
    "diskguard-unit-no-watchdog",
];

/// What `doctor --json` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// What could not be looked at, and why (Docker not answering, a file unreadable).
    pub not_checked: Vec<String>,
}

impl Report {
    /// The readable form: one block per finding.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if self.findings.is_empty() {
            out.push_str("doctor: no bad defaults found\n");
        }
        for f in &self.findings {
            out.push_str(&format!(
                "[{}] {}\n  fix: {}\n  see: {}\n",
                f.id, f.problem, f.fix, f.docs
            ));
        }
        for n in &self.not_checked {
            out.push_str(&format!("not checked: {n}\n"));
        }
        out
    }
}
