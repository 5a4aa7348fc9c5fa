//! What each running container is writing to the Docker disk right now, cheaply enough to
//! read several times a second at `prune` level: the eviction rule needs the container
//! filling the disk within a second or two, and `size=true` listings take far longer.
//!
//! Two counters, whichever the host has, and on both the size of the container's json log:
//! `dockerd` writes the log, not the container's cgroup, so a container flooding stdout is
//! seen only through its log file (O(1): one `stat`).
//! - cgroup v2 (unified hierarchy): the container cgroup's `io.stat` write bytes to the
//!   block device that holds the Docker root — a database writing to its own EBS volume
//!   does not count — plus its `memory.stat` dirty and under-writeback file bytes.
//!   Buffered writes reach `io.stat` only when the kernel writes them back, seconds later
//!   on a host with much memory, so the dirty page cache is counted too. O(1) per container.
//!
//!   Limits: the kernel accounts I/O per disk, not per partition, so writes to another
//!   partition of the Docker root's disk count; when the Docker root has no block device of
//!   its own (btrfs subvolumes, ZFS) every device counts, as the first log line says; and
//!   dirty pages cannot be split per device. They are a level, not a running total: a
//!   steady writer to another disk keeps it flat and adds nothing, but a burst there counts
//!   while it sits in the page cache (seconds) and takes it back when written out. Without
//!   them a buffered writer to the Docker disk would show up only at writeback, up to 30 s
//!   late — too late for the eviction rule — so they stay.
//! - otherwise (cgroup v1 does not attribute buffered writeback to the writer): the
//!   allocated size of the container's writable layer, of its volumes that live on the
//!   Docker disk, and of its json log — what it holds on the disk, whose growth is what
//!   it writes there. A directory walk per container, capped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::DockerSource;
use super::du::Du;
use crate::sample::{ContainerInfo, ContainerWrites};

/// Where cgroup v2 is mounted when it is the unified hierarchy.
const CGROUP2_ROOT: &str = "/sys/fs/cgroup";
/// Where the kernel lists block devices by `major:minor`.
const SYS_DEV_BLOCK: &str = "/sys/dev/block";
/// Rates are taken over about this long: writers that write in bursts (a chunk, a pause)
/// read steady, and a writer that just started still shows after one reading.
const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a container's highest rate is remembered.
const PEAK_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);
/// A walk stops after this many entries: a container with more files in its layer is
/// measured by what the first ones hold (its growth still shows when it writes big files).
const WALK_LIMIT: usize = 20_000;

/// A block device as `io.stat` names it: `major:minor`.
type Device = (u32, u32);

/// Where one container's counter is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Counter {
    /// The container's cgroup directory (v2), and its log.
    Cgroup { dir: PathBuf, log: Option<PathBuf> },
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
    /// The devices whose `io.stat` writes count (cgroup v2): those of the Docker root.
    /// Empty: they could not be told, and every device counts. `None`: not looked up yet.
    devices: Option<Vec<Device>>,
    counters: HashMap<String, Counter>,
    /// Recent readings per container, oldest first, spanning about `RATE_WINDOW`.
    readings: HashMap<String, VecDeque<(Instant, u64)>>,
    /// Each container's highest rate and when it was seen.
    peaks: HashMap<String, (Instant, f64)>,
}

impl WriteMeter {
    /// A meter for this host; `docker_root` is the directory whose disk is watched.
    pub fn new(docker_root: &Path) -> Self {
        let cgroup_v2 = Path::new(CGROUP2_ROOT).join("cgroup.controllers").exists();
        WriteMeter {
            cgroup_v2,
            devices: cgroup_v2.then(|| root_devices(docker_root, Path::new(SYS_DEV_BLOCK))),
            ..WriteMeter::default()
        }
    }

    /// Which counter this host uses, for the first log line.
    pub fn kind(&self) -> String {
        if !self.cgroup_v2 {
            return "writable layer, volumes and json log on the Docker disk".to_owned();
        }
        match self.devices.as_deref().unwrap_or_default() {
            [] => "cgroup v2 io.stat of every device (the Docker root has no block device of its own) + dirty page cache + json log".to_owned(),
            devices => {
                let names: Vec<String> = devices.iter().map(|(ma, mi)| format!("{ma}:{mi}")).collect();
                format!(
                    "cgroup v2 io.stat of the Docker root's device {} + dirty page cache + json log",
                    names.join(", ")
                )
            }
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
        let devices = self.devices.clone().unwrap_or_default();
        // Blocking reads (a walk can take milliseconds) off the async threads.
        let readings = tokio::task::spawn_blocking(move || read_all(jobs, &devices))
            .await
            .unwrap_or_default();
        self.rates(readings, Instant::now(), running)
    }

    /// Records `readings` taken at `now`; the rate of each container read before.
    fn rates(
        &mut self,
        readings: Vec<(String, u64)>,
        now: Instant,
        running: &[&ContainerInfo],
    ) -> Vec<ContainerWrites> {
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
        let log = inspect
            .log_path
            .clone()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        if self.cgroup_v2 {
            let pid = inspect.state.as_ref()?.pid?;
            let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
            let dir = cgroup_dir(Path::new(CGROUP2_ROOT), &cgroup_of(&text)?, id)?;
            return Some(Counter::Cgroup { dir, log });
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
        Some(Counter::Disk { dirs, log })
    }
}

/// The block devices whose writes land on the filesystem at `root`, as `io.stat` names
/// them: its own, and when that is a partition, its disk too (the kernel keeps I/O
/// statistics per disk). Empty when the filesystem has no block device (`sys_dev_block`,
/// normally `/sys/dev/block`, does not know it: btrfs, ZFS, tmpfs).
fn root_devices(root: &Path, sys_dev_block: &Path) -> Vec<Device> {
    let Ok(st) = rustix::fs::stat(root) else {
        return Vec::new();
    };
    let own = (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
    let Ok(node) = sys_dev_block
        .join(format!("{}:{}", own.0, own.1))
        .canonicalize()
    else {
        return Vec::new();
    };
    let mut devices = vec![own];
    if node.join("partition").exists() {
        let disk = node
            .parent()
            .and_then(|p| std::fs::read_to_string(p.join("dev")).ok())
            .and_then(|text| device_of(text.trim()));
        devices.extend(disk);
    }
    devices
}

/// `major:minor` as written in `io.stat` and `/sys/…/dev`.
fn device_of(text: &str) -> Option<Device> {
    let (major, minor) = text.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The cgroup v2 path (`0::/system.slice/docker-ID.scope`) of a `/proc/PID/cgroup` file.
/// The container's cgroup directory under `root`. In a container of its own (the ECS daemon
/// service), diskguard sees other containers' cgroups relative to its own cgroup namespace
/// (`/../docker-<id>.scope`); it then looks where Docker's two cgroup drivers put them.
fn cgroup_dir(root: &Path, relative: &str, id: &str) -> Option<PathBuf> {
    if !relative.split('/').any(|part| part == "..") {
        return Some(root.join(relative));
    }
    [
        format!("system.slice/docker-{id}.scope"),
        format!("docker/{id}"),
    ]
    .into_iter()
    .map(|p| root.join(p))
    .find(|dir| dir.join("io.stat").exists())
}

fn cgroup_of(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_start_matches('/').to_owned())
}

/// Reads each counter; those that cannot be read (the container just stopped) are left out.
fn read_all(jobs: Vec<(String, Counter)>, devices: &[Device]) -> Vec<(String, u64)> {
    jobs.into_iter()
        .filter_map(|(id, counter)| read(&counter, devices).map(|bytes| (id, bytes)))
        .collect()
}

fn read(counter: &Counter, devices: &[Device]) -> Option<u64> {
    match counter {
        Counter::Cgroup { dir, log } => {
            let io = std::fs::read_to_string(dir.join("io.stat")).ok()?;
            let memory = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
            Some(
                written_per_io_stat(&io, devices)
                    .saturating_add(dirty_per_memory_stat(&memory))
                    .saturating_add(log_bytes(log.as_deref())),
            )
        }
        Counter::Disk { dirs, log } => {
            let mut du = Du::new(WALK_LIMIT);
            let held: u64 = dirs.iter().map(|d| du.bytes(d)).sum();
            Some(held.saturating_add(log_bytes(log.as_deref())))
        }
    }
}

/// The size of a json log (0 when there is none, or it was just removed). Appended text,
/// never sparse: its size is what it holds.
fn log_bytes(log: Option<&Path>) -> u64 {
    log.and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len())
}

/// The sum of `wbytes=` over the lines of an `io.stat` file for `devices` (all of them
/// when `devices` is empty).
fn written_per_io_stat(text: &str, devices: &[Device]) -> u64 {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = device_of(fields.next()?)?;
            if !devices.is_empty() && !devices.contains(&device) {
                return None;
            }
            fields
                .find_map(|f| f.strip_prefix("wbytes="))?
                .parse::<u64>()
                .ok()
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_DISK: Device = (7, 3);

    #[test]
    fn a_cgroup_seen_from_another_containers_namespace_is_found_by_the_container_id() {
        let root = tempfile::tempdir().expect("tempdir");
        let id = "abc123";
        let scope = root.path().join(format!("system.slice/docker-{id}.scope"));
        std::fs::create_dir_all(&scope).expect("mkdir");
        std::fs::write(scope.join("io.stat"), "").expect("io.stat");
        // From the host's namespace: the path as it is.
        assert_eq!(
            cgroup_dir(root.path(), "system.slice/docker-abc123.scope", id),
            Some(scope.clone())
        );
        // From diskguard's own container (cgroupns private): relative to its own cgroup.
        assert_eq!(
            cgroup_dir(root.path(), "../docker-abc123.scope", id),
            Some(scope)
        );
        assert_eq!(
            cgroup_dir(root.path(), "../docker-other.scope", "other"),
            None
        );
    }

    #[test]
    fn cgroup_v2_counts_written_bytes_to_the_docker_disk_and_dirty_bytes() {
        let io = "7:3 rbytes=4096 wbytes=1000 rios=1 wios=2 dbytes=0 dios=0\n\
                  259:0 rbytes=0 wbytes=500 rios=0 wios=1 dbytes=0 dios=0\n";
        assert_eq!(written_per_io_stat(io, &[DOCKER_DISK]), 1000);
        assert_eq!(written_per_io_stat(io, &[(259, 1), (259, 0)]), 500);
        assert_eq!(
            written_per_io_stat(io, &[]),
            1500,
            "no device known: all count"
        );
        assert_eq!(written_per_io_stat(io, &[(8, 0)]), 0);
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
    fn a_cgroup_v2_tree_and_its_log_read_as_one_counter() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("io.stat"),
            "7:3 rbytes=0 wbytes=2048 rios=0 wios=1\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("memory.stat"),
            "file_dirty 1024\nfile_writeback 0\n",
        )
        .expect("write");
        let log = dir.path().join("c-json.log");
        std::fs::write(&log, vec![b'x'; 100]).expect("write");
        let counter = Counter::Cgroup {
            dir: dir.path().to_owned(),
            log: Some(log),
        };
        assert_eq!(read(&counter, &[DOCKER_DISK]), Some(3172));
    }

    fn running(id: &str) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            name: id.into(),
            image_id: format!("img-{id}"),
            state: crate::sample::ContainerState::Running,
            created: std::time::SystemTime::UNIX_EPOCH,
            finished_at: None,
            labels: BTreeMap::new(),
            size_rw_bytes: None,
            log_bytes: None,
        }
    }

    /// A cgroup v2 fixture: `io.stat` lines, no dirty pages, and an empty json log.
    fn cgroup(root: &Path, id: &str, io_stat: &str) -> Counter {
        let dir = root.join(id);
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("io.stat"), io_stat).expect("write");
        std::fs::write(dir.join("memory.stat"), "file_dirty 0\nfile_writeback 0\n").expect("write");
        let log = root.join(format!("{id}-json.log"));
        std::fs::write(&log, b"").expect("write");
        Counter::Cgroup {
            dir,
            log: Some(log),
        }
    }

    #[test]
    fn a_stdout_flood_ranks_first_and_writes_to_another_disk_do_not_count() {
        let root = tempfile::tempdir().expect("tempdir");
        // The logger's own cgroup writes nothing: dockerd writes its stdout to the log.
        let logger = cgroup(
            root.path(),
            "logger",
            "7:3 rbytes=0 wbytes=4096 rios=0 wios=1\n",
        );
        // The database writes to its own EBS volume (259:0), not to the Docker disk.
        let db = cgroup(
            root.path(),
            "db",
            "7:3 rbytes=0 wbytes=4096 rios=0 wios=1\n259:0 rbytes=0 wbytes=1000 rios=0 wios=1\n",
        );
        let mut meter = WriteMeter {
            cgroup_v2: true,
            devices: Some(vec![DOCKER_DISK]),
            ..WriteMeter::default()
        };
        meter.counters.insert("logger".into(), logger);
        meter.counters.insert("db".into(), db);
        let containers = [running("logger"), running("db")];
        let refs: Vec<&ContainerInfo> = containers.iter().collect();
        let t0 = Instant::now();
        let first = read_all(meter_jobs(&meter), &[DOCKER_DISK]);
        assert!(
            meter.rates(first, t0, &refs).is_empty(),
            "one reading: no rate yet"
        );

        // One second later: 50 MB more in the log, 200 MB more on the database's disk.
        let log = root.path().join("logger-json.log");
        std::fs::File::options()
            .write(true)
            .open(&log)
            .and_then(|f| f.set_len(50_000_000))
            .expect("grow the log");
        std::fs::write(
            root.path().join("db/io.stat"),
            "7:3 rbytes=0 wbytes=4096 rios=0 wios=1\n259:0 rbytes=0 wbytes=200001000 rios=0 wios=2\n",
        )
        .expect("write");
        let second = read_all(meter_jobs(&meter), &[DOCKER_DISK]);
        let mut rates = meter.rates(second, t0 + RATE_WINDOW, &refs);
        rates.sort_by(|a, b| b.bytes_per_second.total_cmp(&a.bytes_per_second));
        let ranked: Vec<(&str, u64)> = rates
            .iter()
            .map(|w| (w.id.as_str(), w.bytes_per_second as u64))
            .collect();
        assert_eq!(ranked, vec![("logger", 50_000_000), ("db", 0)]);
    }

    fn meter_jobs(meter: &WriteMeter) -> Vec<(String, Counter)> {
        meter
            .counters
            .iter()
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect()
    }

    #[test]
    fn the_docker_root_device_is_its_own_and_a_partition_s_disk() {
        let root = tempfile::tempdir().expect("tempdir");
        let st = rustix::fs::stat(root.path()).expect("stat");
        let (major, minor) = (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
        // A fake /sys/dev/block where that device is partition 1 of disk 259:0.
        let sys = root.path().join("sys");
        let disk = sys.join("devices/nvme0n1");
        let part = disk.join("nvme0n1p1");
        std::fs::create_dir_all(&part).expect("mkdir");
        std::fs::write(disk.join("dev"), "259:0\n").expect("write");
        std::fs::write(part.join("partition"), "1\n").expect("write");
        let block = sys.join("block");
        std::fs::create_dir(&block).expect("mkdir");
        std::os::unix::fs::symlink(&part, block.join(format!("{major}:{minor}"))).expect("symlink");
        assert_eq!(
            root_devices(root.path(), &block),
            vec![(major, minor), (259, 0)]
        );
        // Not a partition: its own device only.
        std::fs::remove_file(part.join("partition")).expect("rm");
        assert_eq!(root_devices(root.path(), &block), vec![(major, minor)]);
        // Unknown to /sys (btrfs, ZFS): none, so that every device counts.
        assert_eq!(root_devices(root.path(), &sys.join("nothing")), Vec::new());
    }
}
