//! A private three-member etcd cluster on loopback (Debian's etcd-server, 3.4), its
//! members' logs at info level so that tests can read etcd's own account of every
//! defragment, and a member that can be stopped and started again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::etcd::member::{go_arch, request};
use crate::processes::peer::{
    Bin, HttpResponse, PeerProcess, binary, free_port, http_tcp, temp_dir, wait_until,
};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    args: Vec<String>,
    log: PathBuf,
    process: Option<PeerProcess>,
}

#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    pub startup: Duration,
    _dir: tempfile::TempDir,
}

/// One defragment as a member's log tells it, in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defrag {
    pub member: usize,
    pub start_ms: i64,
    pub end_ms: i64,
}

fn spawn(m: &Member) -> PeerProcess {
    PeerProcess::spawn(
        &m.name,
        &binary(Bin::Etcd),
        &m.args,
        &m.log,
        &[("ETCD_UNSUPPORTED_ARCH", go_arch())],
    )
}

fn healthy(port: u16) -> bool {
    http_tcp(&format!("127.0.0.1:{port}"), "GET", "/health", &[], b"")
        .is_ok_and(|r| r.status == 200 && r.text().contains("true"))
}

impl EtcdCluster {
    pub fn start(quota: u64) -> EtcdCluster {
        let dir = temp_dir("etcd-cluster");
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let started = Instant::now();
        let mut members: Vec<Member> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let name = format!("m{i}");
                let args = vec![
                    format!("--name={name}"),
                    format!("--data-dir={}", dir.path().join(&name).display()),
                    format!("--listen-client-urls=http://127.0.0.1:{client}"),
                    format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                    format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                    format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                    format!("--initial-cluster={}", initial.join(",")),
                    "--initial-cluster-state=new".into(),
                    format!("--quota-backend-bytes={quota}"),
                    "--logger=zap".into(),
                    "--log-level=info".into(),
                ];
                Member {
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    client_port: *client,
                    args,
                    process: None,
                }
            })
            .collect();
        for m in &mut members {
            m.process = Some(spawn(m));
        }
        for m in &mut members {
            let port = m.client_port;
            let p = m.process.as_mut().expect("just spawned");
            if let Err(why) = p.wait_ready(READY_TIMEOUT, || healthy(port)) {
                panic!("etcd cluster member {} did not start: {why}", m.name);
            }
        }
        EtcdCluster {
            members,
            startup: started.elapsed(),
            _dir: dir,
        }
    }

    pub fn client_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    pub fn request(&self, i: usize, method: &str, path: &str, body: &str) -> HttpResponse {
        request(
            &format!("127.0.0.1:{}", self.members[i].client_port),
            method,
            path,
            body,
        )
    }

    /// SIGTERM, and wait for it to be gone.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].process.take() {
            p.stop(Duration::from_secs(5));
        }
    }

    /// Starts a stopped member again on its data dir, and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        let m = &mut self.members[i];
        let port = m.client_port;
        m.process = Some(spawn(m));
        wait_until(&format!("{} healthy again", m.name), READY_TIMEOUT, || {
            healthy(port).then_some(())
        });
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }

    /// Every defragment of every member, from etcd's own "starting defragment" and
    /// "finished defragment" lines.
    pub fn defrags(&self) -> Vec<Defrag> {
        let mut out = Vec::new();
        for i in 0..self.members.len() {
            let mut start = None;
            for line in self.log(i).lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                let ms = v["ts"].as_str().and_then(parse_ts);
                match (v["msg"].as_str(), ms) {
                    (Some("starting defragment"), Some(ms)) => start = Some(ms),
                    (Some("finished defragment"), Some(ms)) => {
                        if let Some(s) = start.take() {
                            out.push(Defrag {
                                member: i,
                                start_ms: s,
                                end_ms: ms,
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

/// zap's ISO 8601 UTC stamp (`2026-11-28T18:43:36.474Z`) as ms since the epoch.
fn parse_ts(ts: &str) -> Option<i64> {
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // Days since the epoch for a civil date (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + t[0]) * 60 + t[1]) * 60_000 + t[2] * 1000 + ms)
}

#[cfg(test)]
mod tests {
    #[test]
    fn zap_timestamps_parse() {
        assert_eq!(super::parse_ts("1970-01-02T00:00:01.5Z"), Some(86_401_500));
    }
}
