//! What each running container is writing to the Docker disk right now, cheaply enough to
//! read several times a second at `prune` level: the eviction rule needs the container
//! filling the disk within a second or two, and `size=true` listings take far longer.
//!
//! Two counters, whichever the host has:
//! - cgroup v2 (unified hierarchy): the container cgroup's `io.stat` write bytes plus its
//!   `memory.stat` dirty and under-writeback file bytes — buffered writes reach `io.stat`
//!   only when the kernel writes them back, seconds later on a host with much memory, so
//!   the dirty page cache is counted too. O(1) per container.
//! - otherwise (cgroup v1 does not attribute buffered writeback to the writer): the
//!   allocated size of the container's writable layer, of its volumes that live on the
//!   Docker disk, and of its json log — what it holds on the disk, whose growth is what
//!   it writes there. A directory walk per container, capped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::DockerSource;
use crate::sample::{ContainerInfo, ContainerWrites};

/// Where cgroup v2 is mounted when it is the unified hierarchy.
const CGROUP2_ROOT: &str = "/sys/fs/cgroup";
/// Rates are taken over about this long: writers that write in bursts (a chunk, a pause)
/// read steady, and a writer that just started still shows after one reading.
const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a container's highest rate is remembered.
const PEAK_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);
/// A walk stops after this many entries: a container with more files in its layer is
/// measured by what the first ones hold (its growth still shows when it writes big files).
const WALK_LIMIT: usize = 20_000;

/// Where one container's counter is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Counter {
    /// The container's cgroup directory (v2).
    Cgroup(PathBuf),
    /// Its writable layer and volumes on the Docker disk, and its log.
    Disk {
        dirs: Vec<PathBuf>,
        log: Option<PathBuf>,
    },
}

/// Remembers where to read each container and its last reading.
#[derive(Debug, Default)]
pub struct WriteMeter {
    cgroup_v2: bool,
    counters: HashMap<String, Counter>,
    /// Recent readings per container, oldest first, spanning about `RATE_WINDOW`.
    readings: HashMap<String, VecDeque<(Instant, u64)>>,
    /// Each container's highest rate and when it was seen.
    peaks: HashMap<String, (Instant, f64)>,
}

impl WriteMeter {
    pub fn new() -> Self {
        WriteMeter {
            cgroup_v2: Path::new(CGROUP2_ROOT).join("cgroup.controllers").exists(),
            ..WriteMeter::default()
        }
    }

    /// Which counter this host uses, for the first log line.
    pub fn kind(&self) -> &'static str {
        if self.cgroup_v2 {
            "cgroup v2 io.stat + dirty page cache"
        } else {
            "writable layer, volumes and log on the Docker disk"
        }
    }

    /// Reads every running container's counter; returns the rates of those read twice.
    pub async fn measure(
        &mut self,
        source: &DockerSource,
        running: &[&ContainerInfo],
        docker_root: &Path,
    ) -> Vec<ContainerWrites> {
        for c in running {
            if !self.counters.contains_key(&c.id) {
                if let Some(counter) = self.locate(source, &c.id, docker_root).await {
                    self.counters.insert(c.id.clone(), counter);
                }
            }
        }
        let ids: std::collections::HashSet<&str> = running.iter().map(|c| c.id.as_str()).collect();
        self.counters.retain(|id, _| ids.contains(id.as_str()));
        self.readings.retain(|id, _| ids.contains(id.as_str()));
        self.peaks.retain(|id, _| ids.contains(id.as_str()));
        let jobs: Vec<(String, Counter)> = self
            .counters
            .iter()
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect();
        // Blocking reads (a walk can take milliseconds) off the async threads.
        let readings = tokio::task::spawn_blocking(move || {
            jobs.into_iter()
                .filter_map(|(id, counter)| read(&counter).map(|bytes| (id, bytes)))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let now = Instant::now();
        let by_id: HashMap<&str, &&ContainerInfo> =
            running.iter().map(|c| (c.id.as_str(), c)).collect();
        let mut out = Vec::new();
        for (id, bytes) in readings {
            let ring = self.readings.entry(id.clone()).or_default();
            ring.push_back((now, bytes));
            // Keep one reading at or beyond the window, so the rate spans all of it.
            while ring.len() > 2
                && ring
                    .get(1)
                    .is_some_and(|(t, _)| now.duration_since(*t) >= RATE_WINDOW)
            {
                ring.pop_front();
            }
            let (Some(&(then, was)), Some(c)) = (ring.front(), by_id.get(id.as_str())) else {
                continue;
            };
            let seconds = now.duration_since(then).as_secs_f64();
            if seconds <= 0.0 {
                continue;
            }
            let rate = bytes.saturating_sub(was) as f64 / seconds;
            let peak = self.peaks.entry(id.clone()).or_insert((now, rate));
            if rate >= peak.1 || now.duration_since(peak.0) > PEAK_WINDOW {
                *peak = (now, rate);
            }
            out.push(ContainerWrites {
                id: id.clone(),
                name: c.name.clone(),
                image_id: c.image_id.clone(),
                labels: c.labels.clone(),
                bytes_per_second: rate,
                peak_bytes_per_second: peak.1,
                written_bytes: bytes,
            });
        }
        out
    }

    async fn locate(&self, source: &DockerSource, id: &str, docker_root: &Path) -> Option<Counter> {
        let inspect = source.docker.inspect_container(id, None).await.ok()?;
        if self.cgroup_v2 {
            let pid = inspect.state.as_ref()?.pid?;
            let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
            return cgroup_of(&text)
                .map(|rel| Path::new(CGROUP2_ROOT).join(rel))
                .map(Counter::Cgroup);
        }
        let mut dirs = Vec::new();
        if let Some(upper) = inspect
            .graph_driver
            .as_ref()
            .and_then(|g| g.data.get("UpperDir"))
        {
            dirs.push(PathBuf::from(upper));
        }
        for m in inspect.mounts.unwrap_or_default() {
            if let Some(src) = m.source.filter(|s| Path::new(s).starts_with(docker_root)) {
                dirs.push(PathBuf::from(src));
            }
        }
        let log = inspect
            .log_path
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        Some(Counter::Disk { dirs, log })
    }
}

/// The cgroup v2 path (`0::/system.slice/docker-ID.scope`) of a `/proc/PID/cgroup` file.
fn cgroup_of(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_start_matches('/').to_owned())
}

fn read(counter: &Counter) -> Option<u64> {
    match counter {
        Counter::Cgroup(dir) => {
            let io = std::fs::read_to_string(dir.join("io.stat")).ok()?;
            let memory = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
            Some(written_per_io_stat(&io).saturating_add(dirty_per_memory_stat(&memory)))
        }
        Counter::Disk { dirs, log } => {
            let mut budget = WALK_LIMIT;
            let held: u64 = dirs.iter().map(|d| allocated(d, &mut budget)).sum();
            let log = log
                .as_deref()
                .and_then(|p| std::fs::metadata(p).ok())
                .map_or(0, |m| m.blocks() * 512);
            Some(held.saturating_add(log))
        }
    }
}

/// The sum of `wbytes=` over the devices of an `io.stat` file.
fn written_per_io_stat(text: &str) -> u64 {
    text.split_whitespace()
        .filter_map(|field| field.strip_prefix("wbytes="))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

/// `file_dirty` + `file_writeback` of a `memory.stat` file: written, not yet on disk.
fn dirty_per_memory_stat(text: &str) -> u64 {
    let fields: BTreeMap<&str, u64> = text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k, v.trim().parse().ok()?))
        })
        .collect();
    fields.get("file_dirty").copied().unwrap_or(0)
        + fields.get("file_writeback").copied().unwrap_or(0)
}

/// Bytes allocated under `dir` (du's count: blocks, so sparse files count what they hold),
/// visiting at most `budget` entries; symlinks are not followed.
fn allocated(dir: &Path, budget: &mut usize) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            if *budget == 0 {
                return total;
            }
            *budget -= 1;
            let Ok(meta) = entry.metadata() else { continue };
            total = total.saturating_add(meta.blocks() * 512);
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_v2_counts_written_and_dirty_bytes() {
        let io = "8:0 rbytes=4096 wbytes=1000 rios=1 wios=2 dbytes=0 dios=0\n\
                  259:0 rbytes=0 wbytes=500 rios=0 wios=1 dbytes=0 dios=0\n";
        assert_eq!(written_per_io_stat(io), 1500);
        let mem = "anon 123\nfile 9999\nfile_dirty 300\nfile_writeback 200\nshmem 7\n";
        assert_eq!(dirty_per_memory_stat(mem), 500);
        assert_eq!(dirty_per_memory_stat(""), 0);
    }

    #[test]
    fn the_unified_cgroup_line_names_the_container_cgroup() {
        let text = "12:pids:/docker/abc\n0::/system.slice/docker-abc.scope\n";
        assert_eq!(
            cgroup_of(text).as_deref(),
            Some("system.slice/docker-abc.scope")
        );
        assert_eq!(cgroup_of("1:name=systemd:/\n"), None);
    }

    #[test]
    fn a_cgroup_v2_tree_reads_as_one_counter() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("io.stat"),
            "8:0 rbytes=0 wbytes=2048 rios=0 wios=1\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("memory.stat"),
            "file_dirty 1024\nfile_writeback 0\n",
        )
        .expect("write");
        assert_eq!(read(&Counter::Cgroup(dir.path().to_owned())), Some(3072));
    }

    #[test]
    fn a_walk_counts_allocated_bytes_and_stops_at_its_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/a"), vec![1u8; 64 * 1024]).expect("write");
        std::fs::write(dir.path().join("b"), vec![1u8; 64 * 1024]).expect("write");
        let mut budget = 100;
        let all = allocated(dir.path(), &mut budget);
        assert!(all >= 128 * 1024, "{all}");
        let mut tiny = 1;
        assert!(allocated(dir.path(), &mut tiny) < all);
    }
}
