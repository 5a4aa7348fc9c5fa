//! Levels and their hysteresis.

use serde::Serialize;

use crate::config::Thresholds;

/// How close a volume is to full, in increasing order of alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Ok,
    Prune,
    Drain,
    Critical,
}

/// Points below a threshold that usage must fall before a volume leaves `drain` or
/// `critical`, so that a disk hovering around a threshold does not flap every second.
/// (`prune` is left only at `prune_target`: reclaim goes on until the target is met.)
pub const HYSTERESIS_POINTS: f64 = 2.0;

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Prune => "prune",
            Level::Drain => "drain",
            Level::Critical => "critical",
        }
    }

    fn below(self) -> Level {
        match self {
            Level::Ok | Level::Prune => Level::Ok,
            Level::Drain => Level::Prune,
            Level::Critical => Level::Drain,
        }
    }

    /// The usage (percent) below which a volume at this level leaves it.
    fn exit(self, t: &Thresholds) -> f64 {
        match self {
            Level::Ok => 0.0,
            Level::Prune => t.prune_target,
            Level::Drain | Level::Critical => self.threshold(t) - HYSTERESIS_POINTS,
        }
    }

    /// The usage (percent) at which this level starts.
    pub fn threshold(self, t: &Thresholds) -> f64 {
        match self {
            Level::Ok => 0.0,
            Level::Prune => t.prune_start,
            Level::Drain => t.drain,
            Level::Critical => t.critical,
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The level usage alone puts a volume at, with no memory.
pub fn level_for(usage: f64, t: &Thresholds) -> Level {
    [Level::Critical, Level::Drain, Level::Prune]
        .into_iter()
        .find(|l| usage >= l.threshold(t))
        .unwrap_or(Level::Ok)
}

/// Rising is immediate; falling holds `drain` and `critical` until usage is
/// `HYSTERESIS_POINTS` below their thresholds, and `prune` until `prune_target` is met.
pub fn level_with_hysteresis(usage: f64, previous: Level, t: &Thresholds) -> Level {
    let raw = level_for(usage, t);
    let mut level = previous.max(raw);
    while level > raw && usage < level.exit(t) {
        level = level.below();
    }
    level
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn t() -> Thresholds {
        Settings::default().thresholds
    }

    #[test]
    fn usage_maps_to_levels_at_the_default_thresholds() {
        let t = t();
        assert_eq!(level_for(0.0, &t), Level::Ok);
        assert_eq!(level_for(79.99, &t), Level::Ok);
        assert_eq!(level_for(80.0, &t), Level::Prune);
        assert_eq!(level_for(90.0, &t), Level::Drain);
        assert_eq!(level_for(95.0, &t), Level::Critical);
        assert_eq!(level_for(100.0, &t), Level::Critical);
    }

    #[test]
    fn volume_hovering_around_prune_start_does_not_flap() {
        let t = t();
        let mut level = Level::Ok;
        let mut changes = 0;
        for usage in [79.0, 80.5, 79.2, 81.0, 79.0, 80.0, 79.5, 81.0, 79.0] {
            let next = level_with_hysteresis(usage, level, &t);
            changes += usize::from(next != level);
            level = next;
        }
        assert_eq!(changes, 1, "entered prune once and stayed");
        assert_eq!(level, Level::Prune);
    }

    #[test]
    fn falling_far_enough_leaves_each_level() {
        let t = t();
        assert_eq!(
            level_with_hysteresis(77.9, Level::Prune, &t),
            Level::Prune,
            "reclaim goes on to the target"
        );
        assert_eq!(level_with_hysteresis(70.0, Level::Prune, &t), Level::Prune);
        assert_eq!(level_with_hysteresis(69.9, Level::Prune, &t), Level::Ok);
        assert_eq!(
            level_with_hysteresis(92.0, Level::Critical, &t),
            Level::Drain
        );
        assert_eq!(level_with_hysteresis(50.0, Level::Critical, &t), Level::Ok);
        assert_eq!(
            level_with_hysteresis(75.0, Level::Critical, &t),
            Level::Prune,
            "falls to prune, still above target"
        );
        assert_eq!(level_with_hysteresis(88.5, Level::Drain, &t), Level::Drain);
        assert_eq!(level_with_hysteresis(87.9, Level::Drain, &t), Level::Prune);
    }

    #[test]
    fn rising_is_immediate() {
        assert_eq!(
            level_with_hysteresis(96.0, Level::Ok, &t()),
            Level::Critical
        );
    }
}
