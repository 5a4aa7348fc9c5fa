//! The engine's own record of what happened: `docker events` against a private
//! [`Dockerd`], each event parsed and stamped on arrival by a thread of its own. Tests
//! use it to see image deletes as the engine saw them, whoever asked for them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::docker::dockerd::Dockerd;

/// One engine event.
#[derive(Debug, Clone)]
pub struct EngineEvent {
    /// When the engine says it happened (`timeNano`; same clock as the test's).
    pub at: SystemTime,
    /// `container`, `image`, `volume`, `network` …
    pub kind: String,
    /// `create`, `start`, `die`, `delete`, `untag`, `tag`, `destroy` …
    pub action: String,
    /// The object's id (`sha256:…` for images).
    pub id: String,
    pub attributes: serde_json::Map<String, Value>,
}

impl EngineEvent {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }
}

#[derive(Debug)]
pub struct EngineEvents {
    child: Child,
    events: Arc<Mutex<Vec<EngineEvent>>>,
}

impl EngineEvents {
    /// Follows every event from now on (`filters` as for `docker events --filter`).
    /// `--since` now: the engine replays what happened while the CLI was still
    /// subscribing, so an event made right after this returns is never missed.
    pub fn follow(d: &Dockerd, filters: &[&str]) -> EngineEvents {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let since = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
        let mut cmd = d.docker();
        cmd.args(["events", "--format", "{{json .}}", "--since", &since]);
        for f in filters {
            cmd.args(["--filter", f]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker events starts");
        let stdout = child.stdout.take().expect("piped");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let nanos = v["timeNano"].as_u64().unwrap_or_default();
                let event = EngineEvent {
                    at: SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos),
                    kind: v["Type"].as_str().unwrap_or_default().to_owned(),
                    action: v["Action"].as_str().unwrap_or_default().to_owned(),
                    id: v["Actor"]["ID"].as_str().unwrap_or_default().to_owned(),
                    attributes: v["Actor"]["Attributes"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                };
                lock(&sink).push(event);
            }
        });
        EngineEvents { child, events }
    }

    pub fn all(&self) -> Vec<EngineEvent> {
        lock(&self.events).clone()
    }

    pub fn count(&self, kind: &str, action: &str) -> usize {
        lock(&self.events)
            .iter()
            .filter(|e| e.kind == kind && e.action == action)
            .count()
    }

    /// The first event of `kind`/`action` that happened at or after `since`, waiting up
    /// to `limit` for it.
    pub fn first_after(
        &self,
        kind: &str,
        action: &str,
        since: SystemTime,
        limit: Duration,
    ) -> Option<EngineEvent> {
        let start = Instant::now();
        loop {
            let found = lock(&self.events)
                .iter()
                .find(|e| e.kind == kind && e.action == action && e.at >= since)
                .cloned();
            if found.is_some() || start.elapsed() >= limit {
                return found;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for EngineEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
