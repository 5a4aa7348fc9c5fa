//! A minimal std-only HTTP/1.1 server for the mocks (ECS agent, IMDS, fault
//! proxy); no HTTP server crate is a dev-dependency.
//!
//! A thread per connection, keep-alive done properly: Content-Length bodies
//! are read in full, so a pooled hyper connection never sees a half-read
//! request; HTTP/1.0 or `Connection: close` requests get the connection
//! closed after the answer. (Chunked request bodies are not supported — the
//! AWS SDK and hyper send Content-Length for in-memory bodies — and make the
//! server close the connection.) The listener can be closed and re-opened on
//! the same port.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::processes::peer::free_port;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Origin-form target, query included (`/v1/tasks?taskarn=…`).
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    keep_alive: bool,
}

impl Request {
    /// A POST to `/` made by a test peer itself (e.g. a proxy's own call upstream).
    pub fn synthetic(headers: Vec<(String, String)>, body: Vec<u8>) -> Self {
        Request {
            method: "POST".into(),
            path: "/".into(),
            headers,
            body,
            keep_alive: false,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        let headers = vec![("Content-Type".to_owned(), content_type.to_owned())];
        Response {
            status,
            headers,
            body: body.into(),
        }
    }
    pub fn text(status: u16, body: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body)
    }
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self::new(status, "application/json", body.to_string())
    }
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// What a handler does with one request. Handlers run on the
/// connection's own thread, so they may block (to hang or delay).
#[derive(Debug)]
pub enum Reply {
    Send(Response),
    /// Close the connection without answering.
    Close,
}

pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

struct Shared {
    name: String,
    port: u16,
    handler: Handler,
    listener: Mutex<Option<TcpListener>>,
    // Clones of the open connections, so they can be shut from outside
    // (a thread blocked reading a keep-alive connection wakes with EOF).
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
    stop: AtomicBool,
}

pub struct Server {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Server({} on port {})",
            self.shared.name, self.shared.port
        )
    }
}

impl Server {
    /// Listens on 127.0.0.1 at a port from the harness's `free_port`
    /// (so no other peer is handed it while the listener is closed).
    pub fn start(name: &str, handler: Handler) -> Server {
        let (port, listener) = (0..5)
            .find_map(|_| {
                let port = free_port();
                TcpListener::bind(("127.0.0.1", port))
                    .ok()
                    .map(|l| (port, l))
            })
            .unwrap_or_else(|| panic!("{name}: no free loopback port could be bound"));
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener, so the accept loop can stop");
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            port,
            handler,
            listener: Mutex::new(Some(listener)),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || accept_loop(&accept_shared))
            .expect("spawning the mock server's accept thread");
        Server {
            shared,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// `false`: close the listener (connects are refused) and shut every
    /// open connection. `true`: listen again on the same port.
    pub fn set_listening(&self, on: bool) {
        let mut listener = lock(&self.shared.listener);
        if !on {
            *listener = None;
            for (_, conn) in lock(&self.shared.conns).drain() {
                let _ = conn.shutdown(Shutdown::Both);
            }
        } else if listener.is_none() {
            *listener = Some(rebind(&self.shared.name, self.shared.port));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.set_listening(false);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// std sets SO_REUSEADDR, so our own TIME_WAIT sockets do not block this;
// retry briefly in case a client's ephemeral port landed on it.
fn rebind(name: &str, port: u16) -> TcpListener {
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            l.set_nonblocking(true).expect("a non-blocking listener");
            return l;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("{name}: cannot listen on 127.0.0.1:{port} again (taken meanwhile)");
}

// Polls a non-blocking listener: a blocking accept() could not be told to
// stop or to let go of the listener. 5 ms of latency is irrelevant here.
fn accept_loop(shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let accepted = {
            // Accept and register under the listener lock, so that
            // set_listening(false) also shuts a connection accepted just now.
            let listener = lock(&shared.listener);
            listener
                .as_ref()
                .and_then(|l| l.accept().ok())
                .and_then(|(s, _)| {
                    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
                    let clone = s.try_clone().ok()?;
                    lock(&shared.conns).insert(id, clone);
                    Some((id, s))
                })
        };
        let Some((id, stream)) = accepted else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        let conn_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name(format!("{}-conn", shared.name))
            .spawn(move || {
                serve(&conn_shared, stream);
                lock(&conn_shared.conns).remove(&id);
            });
        if spawned.is_err() {
            lock(&shared.conns).remove(&id);
        }
    }
}

fn serve(shared: &Shared, stream: TcpStream) {
    // Accepted sockets do not inherit O_NONBLOCK on Linux; be explicit.
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    while let Some(req) = read_request(&mut reader, &mut writer) {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Reply::Send(resp) = (shared.handler)(&req) else {
            break;
        };
        if write_response(&mut writer, &resp, req.keep_alive).is_err() || !req.keep_alive {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Write);
}

fn read_request(r: &mut BufReader<TcpStream>, w: &mut TcpStream) -> Option<Request> {
    let mut line = String::new();
    // Tolerate stray CRLFs between requests (RFC 9112 §2.2).
    while line.trim().is_empty() {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let http10 = parts.next() == Some("HTTP/1.0");
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let mut req = Request {
        method,
        path,
        headers,
        body: Vec::new(),
        keep_alive: false,
    };
    let connection = req.header("connection").map(str::to_ascii_lowercase);
    req.keep_alive = match connection.as_deref() {
        Some(c) if c.contains("close") => false,
        Some(c) if c.contains("keep-alive") => true,
        _ => !http10,
    };
    if req
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
    }
    if req.header("transfer-encoding").is_some() {
        return None;
    }
    if let Some(len) = req.header("content-length") {
        let mut body = vec![0; len.parse().ok()?];
        r.read_exact(&mut body).ok()?;
        req.body = body;
    }
    Some(req)
}

fn write_response(w: &mut TcpStream, resp: &Response, keep_alive: bool) -> std::io::Result<()> {
    // Clients ignore the reason phrase; it only helps a human reading a dump.
    let reason = match resp.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", resp.status);
    let framing = ["content-length", "connection", "transfer-encoding"];
    for (k, v) in &resp.headers {
        if !framing.iter().any(|f| k.eq_ignore_ascii_case(f)) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    let connection = if keep_alive { "keep-alive" } else { "close" };
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: {connection}\r\n\r\n",
        resp.body.len()
    ));
    w.write_all(head.as_bytes())?;
    w.write_all(&resp.body)?;
    w.flush()
}
