//! `[[watch]]`: a filesystem the node needs besides Docker's (here the ECS agent's state on
//! a loop filesystem of its own) drains the instance when it reaches `drain`, names itself
//! as the `Volume`, and gives the instance back when it recovers; the same filesystem
//! configured twice is watched, shown and measured once. Against moto behind the ECS peer
//! and the ECS agent's introspection mock.

use diskguard_testkit as support;

use std::time::Duration;

use serde_json::Value;
use support::LoopFs;
use support::aws::ecs_cluster::{aws_env, cluster, config, daemon};
use support::processes::peer::{free_port, http_tcp};

#[test]
fn a_second_watched_filesystem_at_91_percent_drains_and_twice_configured_is_shown_once() {
    let c = cluster(10);
    let docker = LoopFs::new(64);
    let mut state = LoopFs::new(64);
    std::fs::create_dir_all(state.path().join("data")).expect("mkdir");
    let tmp = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let path = state.path().display().to_string();
    let cfg = config(
        tmp.path(),
        docker.path(),
        &c.agent.url(),
        &format!(
            "[prometheus]\nlisten = {listen:?}\n\
             [[watch]]\nname = \"ecs\"\npath = {path:?}\n\
             [[watch]]\nname = \"ecs-data\"\npath = \"{path}/data\"\n"
        ),
    );
    let endpoint = c.moto.endpoint();
    let mut d = daemon(&c, &cfg, &endpoint, &[]);
    d.said("watching ecs", Duration::from_secs(5));
    d.said(
        "is on the filesystem watched as ecs: reported once, as ecs",
        Duration::from_secs(5),
    );

    state.fill_to_used_percent(91.0);
    let (_, line) = d.wait_for("ecs volume entered level drain", Duration::from_secs(20));
    assert!(line.contains("volume=\"ecs\""), "{line}");
    c.wait(
        "drained for the ECS state disk",
        Duration::from_secs(30),
        |(s, m)| s == "DRAINING" && m.is_some(),
    );

    // Shown once in status, and measured once.
    let env = aws_env(&endpoint);
    let out = std::process::Command::new(support::processes::diskguard_bin())
        .args(["--config", &cfg.display().to_string(), "status", "--json"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("status");
    let json: Value = serde_json::from_slice(&out.stdout).expect("status --json");
    let names: Vec<&str> = json["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["docker", "ecs"], "{json:#}");
    assert_eq!(json["level"], "drain", "{json:#}");
    let metrics = http_tcp(&listen, "GET", "/metrics", &[], b"").expect("/metrics");
    let text = metrics.text();
    let sizes: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("diskguard_filesystem_size_bytes{"))
        .collect();
    assert_eq!(sizes.len(), 2, "docker and ecs, once each: {sizes:?}");
    assert!(
        sizes.iter().any(|l| l.contains("volume=\"ecs\"")),
        "{sizes:?}"
    );
    assert!(
        !text.contains("ecs-data"),
        "the second name is not measured"
    );

    // Recovered (below 75 % for recover_after, 3 s here): ACTIVE again.
    state.remove_fill();
    c.wait("given back", Duration::from_secs(30), |(s, m)| {
        s == "ACTIVE" && m.is_none()
    });
    d.stop();
}
