//! The same as tests/etcd.rs, over TLS with client certificates made in the test (the
//! openssl CLI): NOSPACE in `status` and `check`, maintenance making etcd writable again,
//! and a client certificate from another CA refused and said so.

use diskguard_testkit as support;

use support::processes::cli::{diskguard, status_json};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::etcd::fill::{alarms, delete_fill, fill_until_nospace, put};
use support::etcd::member::EtcdOptions;
use support::network::certs::Certs;
use support::processes::daemon::Daemon;
use support::{Etcd, LoopFs};

const QUOTA: u64 = 16 * 1024 * 1024;

fn config(
    dir: &Path,
    docker_root: &Path,
    url: &str,
    cert: &Path,
    key: &Path,
    ca: &Path,
    extra: &str,
) -> PathBuf {
    let path = dir.join("diskguard.toml");
    let s = |p: &Path| p.display().to_string();
    std::fs::write(
        &path,
        format!(
            "[sample]\ninterval = \"500ms\"\n\
             [docker]\nroot = {:?}\nhost = \"unix:///nonexistent/docker.sock\"\n\
             [ecs]\nenabled = false\n[cloudwatch]\nenabled = false\n\
             [etcd]\nenabled = true\ninterval = \"1s\"\nendpoint = {url:?}\n\
             ca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n{extra}",
            s(docker_root),
            s(ca),
            s(cert),
            s(key),
        ),
    )
    .expect("config");
    path
}

#[test]
fn over_tls_with_client_certificates_nospace_is_seen_and_maintenance_recovers() {
    let (certs, _certs_dir) = Certs::make();
    let etcd = Etcd::with(&EtcdOptions {
        quota: QUOTA,
        tls: Some(certs.clone()),
        ..EtcdOptions::default()
    });
    let plain = etcd.client_url().trim_start_matches("http://").to_owned();
    let url = etcd.tls_url().expect("TLS URL");
    let fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");

    // A certificate etcd does not trust: status says etcd cannot be read, and why.
    let stranger = config(
        tmp.path(),
        fs.path(),
        &url,
        &certs.stranger_cert,
        &certs.stranger_key,
        &certs.ca,
        "",
    );
    let json = status_json(&stranger);
    assert_eq!(json["etcd"]["reachable"], false, "{json:#}");
    let error = json["etcd"]["error"].as_str().unwrap_or_default();
    assert!(error.contains(&url), "the error names the URL: {error}");
    assert_eq!(
        diskguard(&stranger, &["check"]).status.code(),
        Some(3),
        "unknown"
    );

    fill_until_nospace(&plain);
    let cfg = config(
        tmp.path(),
        fs.path(),
        &url,
        &certs.client_cert,
        &certs.client_key,
        &certs.ca,
        "maintenance = true\n",
    );
    let json = status_json(&cfg);
    let e = &json["etcd"];
    assert_eq!(e["reachable"], true, "{json:#}");
    assert_eq!(e["alarm_nospace"], true, "{json:#}");
    assert!(e["quota_used_percent"].as_f64().expect("percent") >= 100.0);
    assert_eq!(diskguard(&cfg, &["check"]).status.code(), Some(2));

    delete_fill(&plain);
    let since = Instant::now();
    let mut d = Daemon::start(&cfg);
    loop {
        if put(&plain, "probe", b"1").0 == 200 {
            break;
        }
        if since.elapsed() > Duration::from_secs(30) {
            d.drain_for(Duration::from_millis(100));
            panic!(
                "not writable after 30 s over TLS; diskguard said:\n{}",
                d.seen.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "over TLS: writable again {:?} after the delete",
        since.elapsed()
    );
    d.wait_for("disarmed etcd's NOSPACE alarm", Duration::from_secs(5));
    assert_eq!(alarms(&plain), Value::Null);
    d.stop();
}
