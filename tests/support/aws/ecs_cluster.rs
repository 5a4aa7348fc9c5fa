//! An ECS cluster in moto with this host as its first instance, the ECS agent's
//! introspection API for it, and a diskguard daemon configured against them — what the
//! ECS and fleet tests share.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Moto;
use crate::aws::ecs_agent::{AgentMode, EcsAgent};
use crate::aws::ecs_world::{EcsWorld, REGION};
use crate::processes::daemon::Daemon;

pub const MARK: &str = "diskguard.drained-at";

/// moto with a cluster of `n` registered instances; this host is the first.
#[derive(Debug)]
pub struct Cluster {
    pub moto: Moto,
    pub world: EcsWorld,
    pub agent: EcsAgent,
}

pub fn cluster(n: usize) -> Cluster {
    let moto = Moto::start();
    let world = EcsWorld::seed(&moto, "prod", n);
    let me = &world.members()[0];
    let agent = EcsAgent::start(AgentMode::healthy(world.cluster(), &me.arn));
    Cluster { moto, world, agent }
}

impl Cluster {
    pub fn me(&self) -> String {
        self.world.members()[0].arn.clone()
    }

    pub fn status(&self) -> (String, Option<String>) {
        let v = self.world.describe(&self.me());
        (v.status.clone(), v.attribute(MARK).map(str::to_owned))
    }

    /// Polls moto until `want` holds, or fails with what it saw.
    pub fn wait(
        &self,
        what: &str,
        limit: Duration,
        want: impl Fn(&(String, Option<String>)) -> bool,
    ) {
        let start = Instant::now();
        loop {
            let now = self.status();
            if want(&now) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "{what}: still {now:?} after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

pub fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL_ECS", endpoint.to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        // No instance metadata here unless a test serves it.
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
}

/// `aws_env` with IMDS served by the mock at `endpoint` instead of turned off.
pub fn aws_env_with_imds(moto: &str, endpoint: &str) -> Vec<(&'static str, String)> {
    let mut env = aws_env(moto);
    env.retain(|(k, _)| *k != "AWS_EC2_METADATA_DISABLED");
    env.push(("AWS_EC2_METADATA_DISABLED", "false".to_owned()));
    env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint.to_owned()));
    env
}

pub fn config(dir: &Path, root: &Path, introspection: &str, extra: &str) -> PathBuf {
    let path = dir.join("diskguard.toml");
    std::fs::write(
        &path,
        format!(
            "[sample]\ninterval = \"500ms\"\n\
             [thresholds]\nrecover_after = \"3s\"\n{extra}\n\
             [docker]\nroot = {:?}\nhost = \"unix:///nonexistent/docker.sock\"\n\
             [etcd]\nenabled = false\n[cloudwatch]\nenabled = false\n\
             [ecs]\nintrospection_url = {introspection:?}\n",
            root.display().to_string()
        ),
    )
    .expect("config");
    path
}

pub fn daemon(c: &Cluster, config: &Path, endpoint: &str, more: &[(&str, &str)]) -> Daemon {
    let env = aws_env(endpoint);
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(more);
    let mut d = Daemon::start_with(config, &all);
    d.wait_for("found this ECS container instance", Duration::from_secs(30));
    let _ = c;
    d
}
