//! What goes into the ECS machine and what comes out: the events the driver feeds it (a
//! plan's wish, a timer, the answer to each call) and the effects it asks for (calls,
//! counters, log lines, the timer).

use std::time::Duration;

use crate::aws::Lifecycle;
use crate::policy::{EcsAction, EcsIntent};
use crate::sample::EcsStatus;

/// What one plan asks of ECS, as the machine needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Wish {
    pub intent: EcsIntent,
    /// The task family that filled the disk, when the plan names one.
    pub culprit: Option<String>,
    /// An eviction was decided with this plan: the culprit is named at once.
    pub evicting: bool,
    /// The policy's `replace`: drained by diskguard, stuck full for `escalate.after`.
    pub replace: bool,
}

/// What a replacement is decided on, read fresh: this instance and the cluster's drains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaceFacts {
    pub status: EcsStatus,
    pub mark: Option<String>,
    /// Tasks running or pending on this instance.
    pub tasks: u32,
    /// The EC2 instance behind this container instance.
    pub ec2_instance_id: Option<String>,
    /// ACTIVE + DRAINING.
    pub instances: u32,
    /// DRAINING, this instance included.
    pub draining: u32,
}

/// This instance as a read showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewFacts {
    pub status: EcsStatus,
    /// diskguard's mark, if set.
    pub mark: Option<String>,
    /// The culprit attribute's value, if set.
    pub culprit: Option<String>,
    /// The cluster's ACTIVE + DRAINING instances, when the read asked for them.
    pub instances: Option<u32>,
}

/// What the budget check read of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// ACTIVE + DRAINING, when the read asked for it.
    pub instances: Option<u32>,
    /// ARNs of the DRAINING instances.
    pub draining: Vec<String>,
    /// Instances with diskguard's mark, and its value.
    pub marks: Vec<(String, String)>,
}

/// What happened, fed to the machine. Errors are text for the log only, and whether ECS
/// throttled the call.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Plan(Wish),
    /// The timer the machine set last ([`Effect::RefreshIn`]) ran out.
    RefreshDue,
    /// An idle read (for display).
    View(Result<ViewFacts, Failure>),
    /// A decision's read of this instance.
    Fresh(Result<ViewFacts, Failure>),
    Budget(Result<Budget, Failure>),
    Claimed(Result<(), Failure>),
    Withdrawn(Result<(), Failure>),
    Drained(Result<(), Failure>),
    CulpritSet(Result<(), Failure>),
    CulpritCleared(Result<(), Failure>),
    Lifecycle(Result<Lifecycle, Failure>),
    Activated(Result<(), Failure>),
    MarkRemoved(Result<(), Failure>),
    ReplaceRead(Result<ReplaceFacts, Failure>),
    /// The Auto Scaling group that was asked to replace this instance; `None`: the
    /// instance is in no group.
    Replaced(Result<Option<String>, Failure>),
}

/// A failed call, as the machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub throttled: bool,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            throttled: false,
        }
    }

    pub fn throttled(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            throttled: true,
        }
    }
}

/// What the driver is to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Read this instance for display; with the cluster's size when `instances`.
    ReadView {
        instances: bool,
    },
    /// Read this instance for a decision.
    ReadFresh,
    /// Read the DRAINING instances and diskguard's marks; the cluster's size too when
    /// `instances`.
    ReadBudget {
        instances: bool,
    },
    /// Put the mark with this value (a claim on the budget), and the culprit if named: one
    /// call.
    Claim {
        mark: String,
        culprit: Option<String>,
    },
    /// Remove the mark of a claim that lost, or could not be checked.
    Withdraw,
    /// Set DRAINING (the claim holds).
    SetDraining,
    /// Put the mark (and culprit), then set DRAINING: at `critical`, past the budget.
    Drain {
        mark: String,
        culprit: Option<String>,
    },
    /// Put `diskguard.culprit` with the task family.
    SetCulprit(String),
    ClearCulprit,
    /// Count an incident caused by this family (the `Evictions` metric).
    CountCulprit(String),
    ReadLifecycle,
    /// Set ACTIVE and remove the mark, and the culprit unless `keep_culprit`.
    Activate {
        keep_culprit: bool,
    },
    RemoveMark,
    CountSuppressed,
    /// Count a decision that waits on a failed read.
    CountDelayed,
    /// Read this instance (with its tasks), the cluster's size and DRAINING instances.
    ReadForReplacement,
    /// Report what is left on the disk, then ask the Auto Scaling group to replace this
    /// EC2 instance (SetInstanceHealth Unhealthy).
    Replace {
        ec2_instance_id: String,
        respect_grace_period: bool,
    },
    /// Count a replacement asked for (the `Escalations` metric).
    CountReplaced,
    /// Publish this instance's state as now known (after an action or a read).
    Show(Known),
    /// Fire [`Event::RefreshDue`] after this long (replacing any earlier timer).
    RefreshIn(Duration),
    Say(Note),
}

/// What is known of this instance and its cluster, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub status: EcsStatus,
    pub mark: Option<String>,
    pub culprit: Option<String>,
    /// ACTIVE + DRAINING, as last counted.
    pub instances: u32,
    /// DRAINING, as counted at the last budget read.
    pub draining: u32,
}

/// Log lines, typed; the driver words them.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    Suppressed {
        draining: u32,
        allowed: u32,
    },
    Drained {
        critical: bool,
    },
    Undone {
        rank: u32,
        room: u32,
    },
    LostClaim {
        rank: u32,
        room: u32,
    },
    CulpritNamed(String),
    CulpritCleared,
    Undrained,
    StaleMarkRemoved,
    DrainedBySomeoneElse,
    Leaving(String),
    Observed(EcsAction),
    /// A decision waits: `what` failed; tried again after `retry_in`.
    Delayed {
        what: &'static str,
        error: Failure,
        retry_in: Duration,
    },
    Failed {
        what: &'static str,
        error: Failure,
        retry_in: Duration,
    },
    ViewFailed(Failure),
    ViewRecovered,
    /// A replacement waits: why.
    ReplaceWaits(String),
    Replaced {
        group: String,
        ec2_instance_id: String,
    },
    /// No replacement is possible: why (said once).
    ReplaceUnavailable(String),
    /// Observe mode: would ask the group to replace the instance.
    WouldReplace,
}
