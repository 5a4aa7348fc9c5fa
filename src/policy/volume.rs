//! The volume rule: each watched volume's level from bytes, inodes and the forecast, with
//! hysteresis.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::forecast::{drains_early, forecast};
use super::level::{Level, level_with_hysteresis};
use crate::config::Settings;
use crate::sample::{FsStats, History, Volume, VolumeSnapshot};

/// What put a volume at its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    Bytes,
    Inodes,
    Forecast,
}

/// One volume's reading and verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeVerdict {
    pub volume: Volume,
    pub path: PathBuf,
    pub level: Level,
    pub driven_by: Driver,
    /// max(bytes %, inodes %): what the thresholds are compared with.
    pub usage_percent: f64,
    #[serde(skip)]
    pub stats: Option<FsStats>,
    #[serde(skip)]
    pub time_to_full: Option<Duration>,
    pub error: Option<String>,
}

/// Judges one volume: its level from bytes, inodes and the forecast, with hysteresis.
pub fn judge(
    v: &VolumeSnapshot,
    history: &History,
    previous: Level,
    settings: &Settings,
) -> VolumeVerdict {
    let t = &settings.thresholds;
    let Some(stats) = v.stats else {
        return VolumeVerdict {
            volume: v.volume,
            path: v.path.clone(),
            level: Level::Ok,
            driven_by: Driver::Bytes,
            usage_percent: 0.0,
            stats: None,
            time_to_full: None,
            error: v.error.clone(),
        };
    };
    let (bytes, inodes) = (stats.used_percent(), stats.inodes_used_percent());
    let usage = bytes.max(inodes);
    let mut driven_by = if inodes > bytes {
        Driver::Inodes
    } else {
        Driver::Bytes
    };
    let mut level = level_with_hysteresis(usage, previous, t);
    let time_to_full = forecast(history.points(v.volume), &stats).time_to_full;
    if level < Level::Drain && drains_early(usage, time_to_full, previous, t) {
        level = Level::Drain;
        driven_by = Driver::Forecast;
    }
    VolumeVerdict {
        volume: v.volume,
        path: v.path.clone(),
        level,
        driven_by,
        usage_percent: usage,
        stats: Some(stats),
        time_to_full,
        error: None,
    }
}
