//! A unix socket that accepts every connection, reads every request, and never answers:
//! a Docker Engine that is wedged (a hung dockerd, a full disk under its metadata
//! store) looks exactly like this to a client — the connect succeeds and then nothing.

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

#[derive(Debug)]
pub struct StallSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

impl StallSocket {
    pub fn start() -> StallSocket {
        let dir = tempfile::tempdir().expect("tempdir for the stalling socket");
        let path = dir.path().join("stalled.sock");
        let listener = UnixListener::bind(&path).expect("bind stalling socket");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (stop2, accepted2) = (Arc::clone(&stop), Arc::clone(&accepted));
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                accepted2.fetch_add(1, Ordering::SeqCst);
                // Read and drop whatever comes, so the client's write never blocks and
                // only its wait for an answer does; the connection closes when the
                // client gives up.
                thread::spawn(move || swallow(client));
            }
        });
        StallSocket {
            path,
            stop,
            accepted,
            _dir: dir,
        }
    }

    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Connections accepted so far (each one a request left unanswered).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn swallow(mut client: UnixStream) {
    let mut buf = [0u8; 4096];
    while matches!(client.read(&mut buf), Ok(n) if n > 0) {}
}

impl Drop for StallSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.path);
    }
}
