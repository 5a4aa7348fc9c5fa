//! A unix-socket forwarder that holds each new connection for a fixed delay before
//! passing it to the real dockerd: a real engine, made slow on purpose, so a test can
//! act in the middle of a reclaim pass. (bollard opens a connection per request.)

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

#[derive(Debug)]
pub struct SlowSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

impl SlowSocket {
    pub fn start(upstream: &Path, delay: Duration) -> SlowSocket {
        let dir = tempfile::tempdir().expect("tempdir for the slow socket");
        let path = dir.path().join("slow.sock");
        let listener = UnixListener::bind(&path).expect("bind slow socket");
        let stop = Arc::new(AtomicBool::new(false));
        let (upstream, stop2) = (upstream.to_owned(), Arc::clone(&stop));
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let upstream = upstream.clone();
                thread::spawn(move || {
                    thread::sleep(delay);
                    // dockerd down: drop the client, as a dead socket would.
                    let Ok(server) = UnixStream::connect(&upstream) else {
                        return;
                    };
                    pipe(client, server);
                });
            }
        });
        SlowSocket {
            path,
            stop,
            _dir: dir,
        }
    }

    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
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
