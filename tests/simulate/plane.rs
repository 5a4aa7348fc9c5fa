//! The simulated ECS control plane: a cluster's instances with their status and
//! diskguard's attributes, ECS's per-account token buckets, reads that see writes 0–2 s
//! late, and a count of every call — behind the same `ControlPlane` trait the daemon's ECS
//! client implements, so the agents run the daemon's machine and driver unchanged.

use std::cell::RefCell;
use std::future::{Future, ready};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use diskguard::act::ecs::driver::Clock;
use diskguard::act::ecs::events::Failure;
use diskguard::act::ecs::plane::{ControlPlane, PlaneResult, SelfRead};
use diskguard::aws::Lifecycle;
use diskguard::ecs::{CULPRIT, DRAINED_AT};
use diskguard::sample::EcsStatus;

/// Simulated time: a fixed base and milliseconds since.
#[derive(Debug, Clone)]
pub struct SimClock {
    base: Instant,
    wall: SystemTime,
    ms: Arc<Mutex<u64>>,
}

impl SimClock {
    pub fn new() -> Self {
        SimClock {
            base: Instant::now(),
            wall: humantime::parse_rfc3339("2026-12-01T00:00:00Z").expect("a valid time"),
            ms: Arc::new(Mutex::new(0)),
        }
    }
    pub fn ms(&self) -> u64 {
        *self.ms.lock().expect("clock")
    }
    pub fn set(&self, ms: u64) {
        *self.ms.lock().expect("clock") = ms;
    }
    pub fn instant(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }
    /// The millisecond at or after `at`: a timer is never fired before it is due.
    pub fn ms_of(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.base);
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if d > Duration::from_millis(ms) {
            ms + 1
        } else {
            ms
        }
    }
}

impl Clock for SimClock {
    fn now(&self) -> Instant {
        self.instant(self.ms())
    }
    fn wall(&self) -> SystemTime {
        self.wall + Duration::from_millis(self.ms())
    }
}

/// One instance's state as written at some time.
#[derive(Debug, Clone, PartialEq)]
pub struct InstState {
    pub draining: bool,
    pub mark: Option<String>,
    pub culprit: Option<String>,
}

#[derive(Debug)]
struct Bucket {
    burst: f64,
    rate: f64,
    level: f64,
    at: u64,
}

impl Bucket {
    fn new(burst: f64, rate: f64) -> Self {
        Bucket {
            burst,
            rate,
            level: burst,
            at: 0,
        }
    }
    fn take(&mut self, now: u64) -> bool {
        let dt = now.saturating_sub(self.at) as f64 / 1000.0;
        self.level = (self.level + dt * self.rate).min(self.burst);
        self.at = now;
        if self.level >= 1.0 {
            self.level -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What an agent did, for the properties and the report.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// A successful read of itself, and the status it saw.
    SelfRead { draining: bool },
    /// Any call, and whether it was throttled.
    Any { op: &'static str, throttled: bool },
    /// A successful UpdateContainerInstancesState(DRAINING).
    Drained,
}

/// The cluster and everything counted.
#[derive(Debug)]
pub struct World {
    /// Per instance: (visible from, state), in write order.
    history: Vec<Vec<(u64, InstState)>>,
    arns: Vec<String>,
    reads: Bucket,
    cluster_reads: Bucket,
    writes: Bucket,
    rng: fastrand::Rng,
    /// Per agent: (ms, call).
    pub log: Vec<Vec<(u64, Call)>>,
    pub throttled: u64,
    pub calls: u64,
    /// Reads the background caller made.
    pub background: u64,
}

pub type Shared = Rc<RefCell<World>>;

impl World {
    pub fn new(n: usize, seed: u64) -> Shared {
        Rc::new(RefCell::new(World {
            history: vec![
                vec![(
                    0,
                    InstState {
                        draining: false,
                        mark: None,
                        culprit: None,
                    }
                )];
                n
            ],
            arns: (0..n)
                .map(|i| format!("arn:aws:ecs:us-east-1:1:container-instance/sim/{i:05}"))
                .collect(),
            reads: Bucket::new(100.0, 20.0),
            cluster_reads: Bucket::new(50.0, 20.0),
            writes: Bucket::new(100.0, 40.0),
            rng: fastrand::Rng::with_seed(seed),
            log: vec![Vec::new(); n],
            throttled: 0,
            calls: 0,
            background: 0,
        }))
    }

    pub fn arn(&self, i: usize) -> &str {
        &self.arns[i]
    }

    /// The state a read at `now` sees.
    fn seen(&self, i: usize, now: u64) -> &InstState {
        self.history[i]
            .iter()
            .rev()
            .find(|(at, _)| *at <= now)
            .map(|(_, s)| s)
            .unwrap_or(&self.history[i][0].1)
    }

    /// The state as last written (what ECS will show once consistent).
    pub fn truth(&self, i: usize) -> &InstState {
        &self.history[i].last().expect("a first state").1
    }

    /// A write, visible 0–2 s later (never before an earlier write of the same instance).
    pub fn write(&mut self, i: usize, now: u64, change: impl FnOnce(&mut InstState)) {
        let mut next = self.truth(i).clone();
        change(&mut next);
        let lag = self.rng.u64(0..=2000);
        let last = self.history[i].last().map_or(0, |(at, _)| *at);
        self.history[i].push(((now + lag).max(last), next));
        // Keep only what a read could still see.
        let keep_from = self.history[i]
            .iter()
            .rposition(|(at, _)| *at + 5_000 <= now)
            .unwrap_or(0);
        self.history[i].drain(..keep_from);
    }

    /// The background caller's reads this second (half the sustained read rate).
    pub fn background_second(&mut self, now: u64) {
        for _ in 0..10 {
            if self.reads.take(now) {
                self.background += 1;
            }
        }
    }

    fn call(&mut self, agent: usize, op: &'static str, now: u64) -> Result<(), Failure> {
        let ok = match op {
            "DescribeClusters" => self.cluster_reads.take(now),
            "DescribeContainerInstances" | "ListContainerInstances" | "ListAttributes" => {
                self.reads.take(now)
            }
            _ => self.writes.take(now),
        };
        self.calls += 1;
        self.throttled += u64::from(!ok);
        self.log[agent].push((now, Call::Any { op, throttled: !ok }));
        if ok {
            Ok(())
        } else {
            Err(Failure::throttled(format!(
                "{op}: ThrottlingException: Rate exceeded"
            )))
        }
    }

    /// Pages of 100: one call each, at least one.
    fn paged(
        &mut self,
        agent: usize,
        op: &'static str,
        items: usize,
        now: u64,
    ) -> Result<(), Failure> {
        for _ in 0..items.div_ceil(100).max(1) {
            self.call(agent, op, now)?;
        }
        Ok(())
    }

    pub fn n(&self) -> usize {
        self.arns.len()
    }
}

/// One agent's view of the plane: the world, its own instance, the clock.
#[derive(Debug, Clone)]
pub struct SimPlane {
    pub world: Shared,
    pub me: usize,
    pub clock: SimClock,
}

// The simulation runs on one thread and polls each future once; the trait asks for Send
// futures for the daemon's sake, which an Rc cannot give, so the plane's data is cloned
// into each future before it is built.
impl ControlPlane for SimPlane {
    fn describe_self(&self) -> impl Future<Output = PlaneResult<SelfRead>> + Send {
        let now = self.clock.ms();
        let mut w = self.world.borrow_mut();
        let r = w
            .call(self.me, "DescribeContainerInstances", now)
            .map(|()| {
                let s = w.seen(self.me, now).clone();
                SelfRead {
                    status: if s.draining {
                        EcsStatus::Draining
                    } else {
                        EcsStatus::Active
                    },
                    mark: s.mark,
                    culprit: s.culprit,
                    tasks: 0,
                    ec2_instance_id: None,
                }
            });
        if let Ok(read) = &r {
            let draining = read.status == EcsStatus::Draining;
            w.log[self.me].push((now, Call::SelfRead { draining }));
        }
        ready(r)
    }

    fn instances(&self) -> impl Future<Output = PlaneResult<u32>> + Send {
        let now = self.clock.ms();
        let mut w = self.world.borrow_mut();
        let n = u32::try_from(w.n()).unwrap_or(u32::MAX);
        ready(w.call(self.me, "DescribeClusters", now).map(|()| n))
    }

    fn draining(&self) -> impl Future<Output = PlaneResult<Vec<String>>> + Send {
        let now = self.clock.ms();
        let mut w = self.world.borrow_mut();
        let list: Vec<String> = (0..w.n())
            .filter(|&i| w.seen(i, now).draining)
            .map(|i| w.arns[i].clone())
            .collect();
        let read = w.paged(self.me, "ListContainerInstances", list.len(), now);
        if read.is_ok() {
            // The DRAINING list is also a read of this instance's status.
            let draining = w.seen(self.me, now).draining;
            w.log[self.me].push((now, Call::SelfRead { draining }));
        }
        ready(read.map(|()| list))
    }

    fn marked(
        &self,
        name: &str,
    ) -> impl Future<Output = PlaneResult<Vec<(String, String)>>> + Send {
        let now = self.clock.ms();
        let mut w = self.world.borrow_mut();
        let list: Vec<(String, String)> = (0..w.n())
            .filter_map(|i| {
                let s = w.seen(i, now);
                let v = if name == DRAINED_AT {
                    &s.mark
                } else {
                    &s.culprit
                };
                v.clone().map(|v| (w.arns[i].clone(), v))
            })
            .collect();
        ready(
            w.paged(self.me, "ListAttributes", list.len(), now)
                .map(|()| list),
        )
    }

    fn put(&self, attributes: &[(&str, &str)]) -> impl Future<Output = PlaneResult<()>> + Send {
        let now = self.clock.ms();
        let mut w = self.world.borrow_mut();
        let owned: Vec<(String, String)> = attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let r = w.call(self.me, "PutAttributes", now);
        if r.is_ok() {
            w.write(self.me, now, |s| {
                for (k, v) in owned {
                    if k == DRAINED_AT {
                        s.mark = Some(v);
                    } else if k == CULPRIT {
                        s.culprit = Some(v);
                    }
                }
            });
        }
        ready(r)
    }

    fn delete(&self, names: &[&str]) -> impl Future<Output = PlaneResult<()>> + Send {
        let now = self.clock.ms();
        let mut w = self.world.borrow_mut();
        let (mark, culprit) = (names.contains(&DRAINED_AT), names.contains(&CULPRIT));
        let r = w.call(self.me, "DeleteAttributes", now);
        if r.is_ok() {
            w.write(self.me, now, |s| {
                if mark {
                    s.mark = None;
                }
                if culprit {
                    s.culprit = None;
                }
            });
        }
        ready(r)
    }

    fn set_draining(&self, draining: bool) -> impl Future<Output = PlaneResult<()>> + Send {
        let now = self.clock.ms();
        let mut w = self.world.borrow_mut();
        let r = w.call(self.me, "UpdateContainerInstancesState", now);
        if r.is_ok() {
            w.write(self.me, now, |s| s.draining = draining);
            if draining {
                w.log[self.me].push((now, Call::Drained));
            }
        }
        ready(r)
    }

    fn lifecycle(&self) -> impl Future<Output = Result<Lifecycle, String>> + Send {
        ready(Ok(Lifecycle::InService))
    }

    // The scenario never replaces a node (its disks recover once drained).
    fn leftovers(&self) -> impl Future<Output = String> + Send {
        ready(String::new())
    }

    fn replace(
        &self,
        _ec2_instance_id: &str,
        _respect_grace_period: bool,
    ) -> impl Future<Output = PlaneResult<Option<String>>> + Send {
        ready(Ok(None))
    }
}
