//! etcd down, then answering garbage on every path, then down again — while the Docker
//! disk fills: one clear log line per change of etcd's state, `status` saying which,
//! and the Docker reclaim going on as if etcd were not there.

use diskguard_testkit as support;

use support::processes::cli::status_json;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::docker::images::{image_ids, import_image};
use support::network::mockhttp::{Reply, Response, Server};
use support::processes::daemon::Daemon;
use support::{Dockerd, LoopFsOptions};

const MIB: u64 = 1 << 20;

#[test]
fn etcd_down_or_garbage_is_logged_once_per_change_and_docker_reclaim_goes_on() {
    // Not etcd: HTML on /metrics, HTML for the gateway's JSON.
    let garbage = Server::start(
        "garbage-etcd",
        Arc::new(|_| {
            Reply::Send(Response::text(
                200,
                "<html><body>502 Bad Gateway</body></html>",
            ))
        }),
    );
    garbage.set_listening(false);
    let url = format!("http://127.0.0.1:{}", garbage.port());

    let mut d = Dockerd::start_on_loopfs(&LoopFsOptions::new(256));
    for i in 0..12 {
        import_image(&d, &format!("old{i}:v1"), 4 * MIB);
    }
    let before = image_ids(&d).len();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("diskguard.toml");
    std::fs::write(
        &config,
        format!(
            "[sample]\ninterval = \"500ms\"\ninventory_interval = \"2s\"\n\
             [docker]\nhost = {:?}\nroot = {:?}\nmin_image_age = \"1s\"\n\
             [ecs]\nenabled = false\n[cloudwatch]\nenabled = false\n\
             [etcd]\nenabled = true\ninterval = \"1s\"\nendpoint = {url:?}\ndata_dir = {:?}\n",
            d.docker_host(),
            d.data_root().display().to_string(),
            tmp.path().display().to_string(),
        ),
    )
    .expect("config");
    std::thread::sleep(Duration::from_millis(1100)); // past min_image_age
    let mut daemon = Daemon::start(&config);
    daemon.wait_for("etcd is down", Duration::from_secs(10));
    let json = status_json(&config);
    assert_eq!(json["etcd"]["reachable"], false, "{json:#}");
    assert!(
        json["etcd"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&url)),
        "{json:#}"
    );

    // The disk fills while etcd is down: reclaim runs all the same.
    d.loopfs_mut().expect("loop fs").fill_to_used_percent(85.0);
    daemon.wait_for("reclaim pass done", Duration::from_secs(30));
    assert!(image_ids(&d).len() < before, "images were removed");

    garbage.set_listening(true);
    daemon.wait_for(
        "etcd answers, but not as etcd does",
        Duration::from_secs(10),
    );
    let json = status_json(&config);
    assert_eq!(json["etcd"]["reachable"], true, "{json:#}");
    let error = json["etcd"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("unexpected answer"), "{error}");
    assert_eq!(json["etcd"]["db_bytes"], Value::Null);
    let table = Command::new(env!("CARGO_BIN_EXE_diskguard"))
        .arg("--config")
        .arg(&config)
        .arg("status")
        .output()
        .expect("runs");
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("etcd: http://127.0.0.1"),
        "the table says it too"
    );
    daemon.drain_for(Duration::from_secs(3));

    garbage.set_listening(false);
    daemon.wait_for("etcd is down", Duration::from_secs(10));
    daemon.drain_for(Duration::from_secs(3));
    // About 10 reads of etcd; three changes, three lines.
    assert_eq!(
        daemon.count("etcd is down"),
        2,
        "{}",
        daemon.seen.join("\n")
    );
    assert_eq!(daemon.count("etcd answers, but not as etcd does"), 1);
    assert_eq!(
        daemon.count("etcd cannot be read"),
        0,
        "no second line for the same change"
    );
    assert!(daemon.running(), "the daemon lives on");
    daemon.stop();
}
