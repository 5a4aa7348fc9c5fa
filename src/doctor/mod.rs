//! `diskguard doctor`: the bad defaults that cause outages, audited. The checks are pure
//! functions over what [`read`] gathered (files, filesystems, Docker), so that each one is
//! a unit test; every finding has an id, a one-line problem, a one-line fix and a link.
//! Warnings have the same shape but do not fail `doctor`: they say what diskguard cannot do
//! on this host (escalate to the Auto Scaling group), not a bad default.

mod checks;
mod read;

use std::time::Duration;

use serde::Serialize;

pub use checks::{audit, warnings};
pub use read::{AutoScalingFacts, FsFacts, Inputs, UnitFacts, read};

use crate::config::Settings;

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

/// Every warning id, in the order they are checked.
pub const WARNING_IDS: &[&str] = &["not-in-auto-scaling-group", "auto-scaling-group-not-tagged"];

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
        let mut out = self.findings_text();
        out.push_str(&self.not_checked_text());
        out
    }

    fn findings_text(&self) -> String {
        let mut out = String::new();
        if self.findings.is_empty() {
            out.push_str("doctor: no bad defaults found\n");
        }
        for f in &self.findings {
            out.push_str(&block("", f));
        }
        out
    }

    fn not_checked_text(&self) -> String {
        self.not_checked
            .iter()
            .map(|n| format!("not checked: {n}\n"))
            .collect()
    }
}

fn block(prefix: &str, f: &Finding) -> String {
    format!(
        "{prefix}[{}] {}\n  fix: {}\n  see: {}\n",
        f.id, f.problem, f.fix, f.docs
    )
}

/// This instance's Auto Scaling group, as `doctor --json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AutoScalingGroup {
    pub name: String,
    pub instance_id: String,
    pub health_check_grace_period_seconds: u64,
    pub health_check_type: String,
    pub lifecycle_state: String,
    pub protected_from_scale_in: bool,
    pub tagged_for_escalation: bool,
}

/// Everything `doctor` says: the report (its findings set the exit code), and the warnings
/// and this instance's Auto Scaling group, which do not.
#[derive(Debug, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub report: Report,
    pub warnings: Vec<Finding>,
    /// `null` when not in a group, or when that could not be read.
    pub auto_scaling_group: Option<AutoScalingGroup>,
}

impl Outcome {
    /// The audit of what was read.
    pub fn of(inputs: Inputs) -> Outcome {
        let auto_scaling_group = match &inputs.auto_scaling {
            AutoScalingFacts::InGroup { instance_id, group } => Some(AutoScalingGroup {
                name: group.name.clone(),
                instance_id: instance_id.clone(),
                health_check_grace_period_seconds: group.health_check_grace_period.as_secs(),
                health_check_type: group.health_check_type.clone(),
                lifecycle_state: group.lifecycle_state.clone(),
                protected_from_scale_in: group.protected_from_scale_in,
                tagged_for_escalation: group.tagged_for_escalation,
            }),
            _ => None,
        };
        Outcome {
            warnings: warnings(&inputs),
            auto_scaling_group,
            report: Report {
                findings: audit(&inputs),
                not_checked: inputs.not_checked,
            },
        }
    }

    /// 0 clean, 1 with findings; warnings do not count.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.report.findings.is_empty())
    }

    /// The readable form: the findings, the warnings, the group, what was not checked.
    pub fn to_text(&self) -> String {
        let mut out = self.report.findings_text();
        for w in &self.warnings {
            out.push_str(&block("warning ", w));
        }
        if let Some(g) = &self.auto_scaling_group {
            out.push_str(&format!(
                "Auto Scaling group: {} (instance {}, health check {}, grace period {}): escalation can have it replace this instance\n",
                g.name,
                g.instance_id,
                g.health_check_type,
                humantime::format_duration(Duration::from_secs(g.health_check_grace_period_seconds)),
            ));
        }
        out.push_str(&self.report.not_checked_text());
        out
    }
}

/// `diskguard doctor [--json]`: reads the host, audits it; the text to print and the exit
/// code (0 clean, 1 with findings).
pub async fn run(settings: &Settings, json: bool) -> (String, u8) {
    let outcome = Outcome::of(read(settings).await);
    let text = if json {
        serde_json::to_string_pretty(&outcome).expect("the outcome is plain data") + "\n"
    } else {
        outcome.to_text()
    };
    (text, outcome.exit_code())
}
