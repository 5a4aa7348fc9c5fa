//! A mock of the ECS agent's introspection API (`/v1/metadata`, `/v1/tasks`) in
//! its documented format, switchable at run time between healthy and each way
//! the real agent fails while it starts, restarts or crashes — so diskguard's
//! identity discovery can be driven through every state change.
//!
//! The HTTP/1.1 server under it lives in `mockhttp.rs`; it is re-exported here
//! as [`http`], its former home.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::network::mockhttp::{Reply, Request, Response, Server};

/// The mock HTTP server, at the path it had before it moved to `mockhttp.rs`.
pub use crate::network::mockhttp as http;

/// What the real agent on Amazon Linux / Flatcar reports.
pub const AGENT_VERSION: &str = "Amazon ECS Agent - v1.89.2 (3b5c7d7e)";

/// How the mock agent answers (every path behaves the same except in the
/// healthy states).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentMode {
    /// `/v1/metadata` names the cluster and the container instance.
    Healthy { cluster: String, arn: String },
    /// Agent up but not yet registered: the real agent then answers
    /// `"ContainerInstanceArn": null`.
    Registering { cluster: String },
    /// 404 (an old agent, or something else listening on the port).
    NotFound,
    /// 503 with a text body.
    Unavailable,
    /// 200 with a body that is not JSON.
    Garbage,
    /// Nothing listens: connect() is refused, open connections are closed.
    Refuse,
    /// Connections are accepted and requests read, but never answered
    /// (until the mode changes; then the connection is closed unanswered).
    Hang,
}

impl AgentMode {
    pub fn healthy(cluster: &str, arn: &str) -> Self {
        AgentMode::Healthy {
            cluster: cluster.to_owned(),
            arn: arn.to_owned(),
        }
    }
}

#[derive(Debug)]
struct AgentState {
    mode: Mutex<AgentMode>,
    tasks: Mutex<Vec<Value>>,
    paths: Mutex<Vec<String>>,
    requests: AtomicU64,
    stopped: AtomicBool,
}

impl AgentState {
    fn mode(&self) -> AgentMode {
        self.mode.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The mock agent on `127.0.0.1:<free port>`; dropping it stops it.
#[derive(Debug)]
pub struct EcsAgent {
    server: Server,
    state: Arc<AgentState>,
}

impl EcsAgent {
    pub fn start(mode: AgentMode) -> EcsAgent {
        let state = Arc::new(AgentState {
            mode: Mutex::new(mode.clone()),
            tasks: Mutex::new(Vec::new()),
            paths: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        });
        let handler_state = Arc::clone(&state);
        let server = Server::start("ecs-agent", Arc::new(move |r| answer(&handler_state, r)));
        if mode == AgentMode::Refuse {
            server.set_listening(false);
        }
        EcsAgent { server, state }
    }

    /// `http://127.0.0.1:PORT` — what goes in `[ecs] introspection_url`.
    /// Stays the same across `Refuse` and back.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    /// Switches behaviour; takes effect before this returns (for `Refuse`:
    /// the listener is closed and open keep-alive connections are shut).
    pub fn set_mode(&self, mode: AgentMode) {
        let mut current = self.state.mode.lock().unwrap_or_else(|e| e.into_inner());
        let was_refusing = *current == AgentMode::Refuse;
        *current = mode.clone();
        drop(current);
        if mode == AgentMode::Refuse {
            self.server.set_listening(false);
        } else if was_refusing {
            self.server.set_listening(true);
        }
    }

    pub fn mode(&self) -> AgentMode {
        self.state.mode()
    }

    /// Tasks served by `/v1/tasks` (build them with [`task`]).
    pub fn set_tasks(&self, tasks: Vec<Value>) {
        *self.state.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
    }

    /// Requests received (answered or not; refused connects never arrive).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Paths of the requests received, in order.
    pub fn paths(&self) -> Vec<String> {
        self.state
            .paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for EcsAgent {
    fn drop(&mut self) {
        // Releases handlers parked in `Hang`; the server stops in its own Drop.
        self.state.stopped.store(true, Ordering::SeqCst);
    }
}

/// One entry of `/v1/tasks` in the documented shape; `containers` are
/// `(DockerId, DockerName, Name)`.
pub fn task(arn: &str, family: &str, version: &str, containers: &[(&str, &str, &str)]) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(id, docker_name, name)| json!({"DockerId": id, "DockerName": docker_name, "Name": name}))
        .collect();
    json!({
        "Arn": arn, "DesiredStatus": "RUNNING", "KnownStatus": "RUNNING",
        "Family": family, "Version": version, "Containers": containers,
    })
}

fn answer(state: &AgentState, req: &Request) -> Reply {
    state.requests.fetch_add(1, Ordering::SeqCst);
    state
        .paths
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(req.path.clone());
    let path = req.path.split('?').next().unwrap_or_default();
    let (cluster, arn) = match state.mode() {
        AgentMode::Healthy { cluster, arn } => (cluster, Some(arn)),
        AgentMode::Registering { cluster } => (cluster, None),
        AgentMode::NotFound => return Reply::Send(Response::text(404, "404 page not found\n")),
        AgentMode::Unavailable => {
            return Reply::Send(Response::text(503, "ECS agent is restarting\n"));
        }
        AgentMode::Garbage => {
            let body = "{\"Cluster\": \"half-written";
            return Reply::Send(Response::new(200, "application/json", body));
        }
        // A connection accepted just before the switch gets no answer either.
        AgentMode::Refuse => return Reply::Close,
        AgentMode::Hang => {
            while state.mode() == AgentMode::Hang && !state.stopped.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            return Reply::Close;
        }
    };
    match (req.method.as_str(), path) {
        ("GET", "/v1/metadata") => Reply::Send(Response::json(
            200,
            &json!({"Cluster": cluster, "ContainerInstanceArn": arn, "Version": AGENT_VERSION}),
        )),
        ("GET", "/v1/tasks") => {
            let tasks = state
                .tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            Reply::Send(Response::json(200, &json!({ "Tasks": tasks })))
        }
        _ => Reply::Send(Response::text(404, "404 page not found\n")),
    }
}
