//! Time to full: a least-squares line through the recent history of used bytes and inodes.

use std::time::Duration;

use super::level::{HYSTERESIS_POINTS, Level};
use crate::config::Thresholds;
use crate::sample::{FsStats, Point};

/// The forecast needs at least this much history: a burst over a few seconds is noise.
pub const MIN_FORECAST_SPAN: Duration = Duration::from_secs(30);

/// Growth rates and when the volume fills at that rate.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Forecast {
    /// Bytes per second; negative when falling. `None` without enough history.
    pub bytes_per_second: Option<f64>,
    pub inodes_per_second: Option<f64>,
    /// When bytes or inodes run out, whichever is first. `None` unless rising.
    pub time_to_full: Option<Duration>,
}

/// Fits a line to `points` (oldest first) and extrapolates from `now_stats`.
pub fn forecast<'a>(
    points: impl Iterator<Item = &'a Point> + Clone,
    now_stats: &FsStats,
) -> Forecast {
    let mut iter = points.clone();
    let (Some(first), Some(last)) = (iter.next(), points.clone().last()) else {
        return Forecast::default();
    };
    if last.at.duration_since(first.at).unwrap_or_default() < MIN_FORECAST_SPAN {
        return Forecast::default();
    }
    let xs = || {
        points.clone().map(|p| {
            p.at.duration_since(first.at)
                .unwrap_or_default()
                .as_secs_f64()
        })
    };
    let bytes = slope(xs(), points.clone().map(|p| p.used_bytes as f64));
    let inodes = slope(xs(), points.clone().map(|p| p.used_inodes as f64));
    let until = |left: u64, rate: Option<f64>| match rate {
        Some(r) if r > 0.0 && r.is_finite() => Some(Duration::from_secs_f64(left as f64 / r)),
        _ => None,
    };
    let by_bytes = until(now_stats.avail_bytes, bytes);
    let by_inodes = if now_stats.total_inodes > 0 {
        until(now_stats.free_inodes, inodes)
    } else {
        None
    };
    let time_to_full = match (by_bytes, by_inodes) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Forecast {
        bytes_per_second: bytes,
        inodes_per_second: inodes,
        time_to_full,
    }
}

/// The short window the eviction rule reads the fill rate over. A fast writer goes from
/// `prune_start` to full in seconds, which a least-squares line over minutes of mostly
/// flat history cannot see.
pub const RECENT_WINDOW: Duration = Duration::from_secs(3);
/// The short-window rate needs at least this span of samples.
const RECENT_MIN_SPAN: Duration = Duration::from_millis(500);

/// The fill over the last few seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recent {
    /// Bytes per second; negative when falling.
    pub bytes_per_second: f64,
    /// At this rate, when the volume is full. `None` unless rising.
    pub time_to_full: Option<Duration>,
}

/// The slope of used bytes over the last `RECENT_WINDOW` of `points` (oldest first); `None`
/// with fewer than three points or less than half a second of them.
pub fn recent<'a>(
    points: impl DoubleEndedIterator<Item = &'a Point> + Clone,
    now_stats: &FsStats,
) -> Option<Recent> {
    let last = points.clone().next_back()?;
    let tail: Vec<&Point> = points
        .filter(|p| {
            last.at
                .duration_since(p.at)
                .is_ok_and(|age| age <= RECENT_WINDOW)
        })
        .collect();
    let first = tail.first()?;
    if tail.len() < 3 || last.at.duration_since(first.at).unwrap_or_default() < RECENT_MIN_SPAN {
        return None;
    }
    let xs = tail.iter().map(|p| {
        p.at.duration_since(first.at)
            .unwrap_or_default()
            .as_secs_f64()
    });
    let ys = tail.iter().map(|p| p.used_bytes as f64);
    let rate = slope(xs, ys)?;
    Some(Recent {
        bytes_per_second: rate,
        time_to_full: (rate > 0.0 && rate.is_finite())
            .then(|| Duration::from_secs_f64(now_stats.avail_bytes as f64 / rate)),
    })
}

/// Whether the forecast raises a volume to `drain` that usage alone puts lower.
///
/// The forecast alone never drains below `prune_start`: a burst of image pulls on a roomy
/// disk is not a crisis. Once it has drained, it holds the level down to `prune_start`
/// minus the hysteresis and until time-to-full is twice `drain_lead`, so that noise in
/// the slope does not flap the instance between DRAINING and ACTIVE.
pub fn drains_early(
    usage: f64,
    time_to_full: Option<Duration>,
    previous: Level,
    t: &Thresholds,
) -> bool {
    let holding = previous >= Level::Drain;
    let floor = t.prune_start - if holding { HYSTERESIS_POINTS } else { 0.0 };
    let lead = if holding {
        t.drain_lead * 2
    } else {
        t.drain_lead
    };
    usage >= floor && time_to_full.is_some_and(|ttf| ttf < lead)
}

/// Least-squares slope of y over x; `None` when x does not vary.
fn slope(
    xs: impl Iterator<Item = f64> + Clone,
    ys: impl Iterator<Item = f64> + Clone,
) -> Option<f64> {
    let n = xs.clone().count() as f64;
    if n < 2.0 {
        return None;
    }
    let mean_x = xs.clone().sum::<f64>() / n;
    let mean_y = ys.clone().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in xs.zip(ys) {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn points(rate_bytes: f64, seconds: u64) -> Vec<Point> {
        (0..=seconds)
            .map(|s| Point {
                at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + s),
                used_bytes: (1_000_000.0 + rate_bytes * s as f64) as u64,
                used_inodes: 100,
            })
            .collect()
    }

    fn stats(avail: u64) -> FsStats {
        FsStats {
            total_bytes: 10_000_000_000,
            free_bytes: avail,
            avail_bytes: avail,
            total_inodes: 1000,
            free_inodes: 900,
            device: 1,
        }
    }

    #[test]
    fn constant_fill_gives_time_to_full_within_five_percent() {
        // 1 MB/s with 600 MB left: full in 600 s.
        let f = forecast(points(1_000_000.0, 120).iter(), &stats(600_000_000));
        let ttf = f.time_to_full.expect("rising").as_secs_f64();
        assert!((ttf - 600.0).abs() / 600.0 < 0.05, "ttf {ttf}");
    }

    #[test]
    fn flat_or_falling_usage_has_no_time_to_full() {
        assert_eq!(
            forecast(points(0.0, 120).iter(), &stats(1_000)).time_to_full,
            None
        );
        assert_eq!(
            forecast(points(-5_000.0, 120).iter(), &stats(1_000)).time_to_full,
            None
        );
    }

    #[test]
    fn less_than_thirty_seconds_of_history_gives_no_forecast() {
        let f = forecast(points(1_000_000.0, 20).iter(), &stats(1_000));
        assert_eq!(f, Forecast::default());
    }

    #[test]
    fn inodes_running_out_first_set_time_to_full() {
        let pts: Vec<Point> = (0..=60u64)
            .map(|s| Point {
                at: SystemTime::UNIX_EPOCH + Duration::from_secs(s),
                used_bytes: 1_000,
                used_inodes: 100 + 10 * s,
            })
            .collect();
        // 900 free inodes at 10/s: 90 s.
        let ttf = forecast(pts.iter(), &stats(1_000_000))
            .time_to_full
            .expect("inodes rising");
        assert!((ttf.as_secs_f64() - 90.0).abs() < 1.0);
    }
}
