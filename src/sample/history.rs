//! A bounded ring of recent readings per volume: what the forecast fits its line to.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use super::{Snapshot, Volume};

/// One point on a volume's usage curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub at: SystemTime,
    pub used_bytes: u64,
    pub used_inodes: u64,
}

/// Readings younger than `window`, at most `capacity` per volume (oldest dropped first).
#[derive(Debug, Clone)]
pub struct History {
    window: Duration,
    capacity: usize,
    volumes: BTreeMap<Volume, VecDeque<Point>>,
}

impl History {
    /// Enough room for `window` of samples every `interval`, with slack for jitter.
    pub fn new(window: Duration, interval: Duration) -> Self {
        let per_window = window.as_millis() / interval.as_millis().max(1);
        // Bounded whatever the settings: a 1-hour window at 100 ms would otherwise hold 36k points.
        let capacity = usize::try_from(per_window + 2)
            .unwrap_or(usize::MAX)
            .min(4096);
        History {
            window,
            capacity,
            volumes: BTreeMap::new(),
        }
    }

    /// Adds the readable volumes of `snapshot` and forgets what fell out of the window.
    pub fn record(&mut self, snapshot: &Snapshot) {
        for v in &snapshot.volumes {
            let Some(stats) = v.stats else { continue };
            let ring = self.volumes.entry(v.volume).or_default();
            ring.push_back(Point {
                at: snapshot.at,
                used_bytes: stats.used_bytes(),
                used_inodes: stats.used_inodes(),
            });
            while ring.len() > self.capacity {
                ring.pop_front();
            }
            while ring.front().is_some_and(|p| {
                snapshot
                    .at
                    .duration_since(p.at)
                    .is_ok_and(|age| age > self.window)
            }) {
                ring.pop_front();
            }
        }
    }

    /// Points of one volume, oldest first.
    pub fn points(&self, volume: Volume) -> impl DoubleEndedIterator<Item = &Point> + Clone {
        self.volumes.get(&volume).into_iter().flatten()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{FsStats, VolumeSnapshot};
    use std::path::PathBuf;

    fn snap(at_s: u64, used: u64) -> Snapshot {
        let stats = FsStats {
            total_bytes: 1000,
            free_bytes: 1000 - used,
            avail_bytes: 1000 - used,
            total_inodes: 10,
            free_inodes: 5,
            device: 1,
        };
        Snapshot {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(at_s),
            volumes: vec![VolumeSnapshot {
                volume: Volume::Docker,
                path: PathBuf::from("/d"),
                stats: Some(stats),
                error: None,
            }],
            ..Snapshot::default()
        }
    }

    #[test]
    fn keeps_only_the_window_and_the_capacity() {
        let mut h = History::new(Duration::from_secs(10), Duration::from_secs(1));
        for t in 0..100 {
            h.record(&snap(t, t));
        }
        let points: Vec<_> = h.points(Volume::Docker).collect();
        assert!(points.len() <= h.capacity());
        assert!(points.len() >= 10);
        assert_eq!(points.last().map(|p| p.used_bytes), Some(99));
        assert!(points.first().map(|p| p.used_bytes) >= Some(89));
    }

    #[test]
    fn capacity_is_bounded_for_long_windows() {
        let h = History::new(Duration::from_secs(86_400), Duration::from_millis(100));
        assert_eq!(h.capacity(), 4096);
    }
}
