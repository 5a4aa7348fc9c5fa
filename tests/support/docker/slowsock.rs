//! Unix-socket forwarders in front of a real dockerd: the real engine, made slow or made
//! to fail one chosen request on purpose, so a test can act in the middle of a reclaim
//! pass or make one item's removal fail. bollard opens a connection per request (no
//! keep-alive pool), so each connection carries exactly one request.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What to do with one request, decided from its method and path (with the API version
/// prefix and query, e.g. `DELETE /v1.41/images/sha256:…?force=false&noprune=false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Forward,
    /// Answer with this status and a Docker-style `{"message": …}` body instead.
    Fail(u16, String),
}

type Rule = Arc<dyn Fn(&str, &str) -> Action + Send + Sync>;

#[derive(Debug)]
pub struct SlowSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl SlowSocket {
    /// Holds each new connection for `delay` before passing it to the real dockerd.
    pub fn start(upstream: &Path, delay: Duration) -> SlowSocket {
        Self::with_rule(
            upstream,
            delay,
            Arc::new(|_: &str, _: &str| Action::Forward),
        )
    }

    /// Forwards every request to the real dockerd, unless `rule` says to fail it. The
    /// rule runs before the request is forwarded, so it may also change the world first
    /// (move a tag, start a container) to land a race at an exact point.
    pub fn hooked(
        upstream: &Path,
        rule: impl Fn(&str, &str) -> Action + Send + Sync + 'static,
    ) -> SlowSocket {
        Self::with_rule(upstream, Duration::ZERO, Arc::new(rule))
    }

    fn with_rule(upstream: &Path, delay: Duration, rule: Rule) -> SlowSocket {
        let dir = tempfile::tempdir().expect("tempdir for the forwarding socket");
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).expect("bind forwarding socket");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (upstream, stop2, seen) = (
            upstream.to_owned(),
            Arc::clone(&stop),
            Arc::clone(&requests),
        );
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let (upstream, rule, seen) =
                    (upstream.clone(), Arc::clone(&rule), Arc::clone(&seen));
                thread::spawn(move || serve(client, &upstream, delay, &*rule, &seen));
            }
        });
        SlowSocket {
            path,
            stop,
            requests,
            _dir: dir,
        }
    }

    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// `METHOD path` of every request seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn serve(
    mut client: UnixStream,
    upstream: &Path,
    delay: Duration,
    rule: &(dyn Fn(&str, &str) -> Action + Send + Sync),
    seen: &Mutex<Vec<String>>,
) {
    thread::sleep(delay);
    // The request head, byte by byte up to the blank line: small, and nothing of the
    // body is consumed, so the rest can be piped as it is.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut first = text.lines().next().unwrap_or("").split(' ');
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(format!("{method} {target}"));
    match rule(method, target) {
        Action::Fail(status, message) => {
            let body = serde_json::json!({ "message": message }).to_string();
            let _ = write!(
                client,
                "HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        Action::Forward => {
            // dockerd down: drop the client, as a dead socket would.
            let Ok(mut server) = UnixStream::connect(upstream) else {
                return;
            };
            if server.write_all(&head).is_err() {
                return;
            }
            pipe(client, server);
        }
    }
}

fn pipe(client: UnixStream, server: UnixStream) {
    let (mut c2, mut s2) = match (client.try_clone(), server.try_clone()) {
        (Ok(c), Ok(s)) => (c, s),
        _ => return,
    };
    let up = thread::spawn(move || copy(&mut c2, &mut s2));
    let (mut c, mut s) = (client, server);
    copy(&mut s, &mut c);
    let _ = up.join();
}

fn copy(from: &mut UnixStream, to: &mut UnixStream) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

impl Drop for SlowSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.path);
    }
}
