//! diskguard against a real etcd (Debian's etcd-server 3.4) with a 16 MiB quota, filled
//! until NOSPACE: what `status`, `check` and CloudWatch say, that maintenance off changes
//! nothing in etcd, and that maintenance on makes etcd writable again within 30 s.

use diskguard_testkit as support;

use support::processes::cli::{diskguard, status_json};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::aws::cwpeer::CwPeer;
use support::etcd::fill::{alarms, b64, db_bytes, delete_fill, fill_until_nospace, put, revision};
use support::processes::daemon::Daemon;
use support::{Etcd, LoopFs};

const QUOTA: u64 = 16 * 1024 * 1024;
const NS: &str = "DiskGuardEtcdTest";

/// Docker's root on its own small, empty loop fs (so its level is ok), Docker itself a
/// socket that does not exist, and etcd as given.
fn config(dir: &Path, docker_root: &Path, etcd: &Etcd, extra: &str) -> PathBuf {
    let path = dir.join("diskguard.toml");
    std::fs::write(
        &path,
        format!(
            "[sample]\ninterval = \"500ms\"\n\
             [docker]\nroot = {:?}\nhost = \"unix:///nonexistent/docker.sock\"\n\
             [ecs]\nenabled = false\n\
             [etcd]\nenabled = true\ninterval = \"1s\"\nendpoint = {:?}\ndata_dir = {:?}\n{extra}",
            docker_root.display().to_string(),
            etcd.client_url(),
            etcd.data_dir().display().to_string(),
        ),
    )
    .expect("config");
    path
}

fn addr(etcd: &Etcd) -> String {
    etcd.client_url().trim_start_matches("http://").to_owned()
}

#[test]
fn nospace_shows_in_status_check_and_cloudwatch_and_maintenance_off_changes_nothing() {
    let etcd = Etcd::start(QUOTA);
    let fs = LoopFs::new(64);
    let (keys, took) = fill_until_nospace(&addr(&etcd));
    println!("16 MiB quota filled to NOSPACE by {keys} puts of 512 KiB in {took:?}");

    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        tmp.path(),
        fs.path(),
        &etcd,
        &format!(
            "[cloudwatch]\nenabled = true\nnamespace = \"{NS}\"\ninterval = \"2s\"\nhigh_resolution = true\n"
        ),
    );
    let (rev_before, alarms_before) = (revision(&addr(&etcd)), alarms(&addr(&etcd)));
    assert_eq!(alarms_before[0]["alarm"], "NOSPACE", "{alarms_before}");

    let json = status_json(&cfg);
    let e = &json["etcd"];
    assert_eq!(e["alarm_nospace"], true, "{json:#}");
    assert!(
        e["quota_used_percent"].as_f64().expect("percent") >= 100.0,
        "{e:#}"
    );
    assert_eq!(e["quota_bytes"], QUOTA);
    assert!(e["db_bytes"].as_u64().expect("db") >= QUOTA);
    assert!(e["in_use_bytes"].as_u64().is_some());
    assert_eq!(e["quota_level"], "critical");
    assert_eq!(
        e["alarms"][0].as_str().map(|a| a.starts_with("NOSPACE@")),
        Some(true)
    );
    assert_eq!(e["maintenance"], false);
    let table = String::from_utf8_lossy(&diskguard(&cfg, &["status"]).stdout).into_owned();
    assert!(table.contains("alarms: NOSPACE@"), "{table}");

    let check = diskguard(&cfg, &["check"]);
    let said = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(2), "{said}");
    assert!(
        said.contains("etcd quota") && said.contains("NOSPACE"),
        "{said}"
    );

    // The metric at the CloudWatch peer, from the daemon (maintenance off).
    let peer = CwPeer::start();
    let endpoint = peer.endpoint();
    let began = SystemTime::now();
    let mut d = Daemon::start_with(
        &cfg,
        &[
            ("AWS_ENDPOINT_URL_CLOUDWATCH", endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    );
    d.wait_for("etcd answers: db at", Duration::from_secs(20));
    let host = diskguard::report::cloudwatch::hostname();
    let mut points = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while points.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        points = peer.statistics(NS, "EtcdNoSpaceAlarm", &[("Host", &host)], began, 60);
    }
    assert!(
        points.iter().any(|p| p["Maximum"].as_f64() == Some(1.0)),
        "EtcdNoSpaceAlarm {points:#?}; metrics: {:#?}",
        peer.list_metrics(NS)
    );
    let quota = peer.statistics(NS, "EtcdQuotaUsedPercent", &[("Host", &host)], began, 60);
    assert!(
        quota
            .iter()
            .any(|p| p["Minimum"].as_f64().is_some_and(|v| v >= 100.0)),
        "{quota:#?}"
    );
    d.drain_for(Duration::from_secs(2));
    d.stop();

    // Off by default: after status, check and a daemon that watched it, etcd is as it was.
    assert_eq!(revision(&addr(&etcd)), rev_before, "revision moved");
    assert_eq!(alarms(&addr(&etcd)), alarms_before, "alarm list changed");
    assert!(!etcd.log().contains("defragment"), "something defragmented");
}

#[test]
fn maintenance_compacts_defragments_and_disarms_and_a_write_succeeds_within_30_seconds() {
    let etcd = Etcd::with(&support::etcd::member::EtcdOptions {
        quota: QUOTA,
        info_log: true,
        ..Default::default()
    });
    let fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), fs.path(), &etcd, "maintenance = true\n");
    fill_until_nospace(&addr(&etcd));
    let (status, _) = put(&addr(&etcd), "probe", b"1");
    assert_eq!(status, 429, "etcd refuses writes under NOSPACE");
    let deleted = delete_fill(&addr(&etcd));
    assert!(deleted > 0);
    // The clock starts with the delete; diskguard starts after it, as on a node where an
    // operator cleared keys and diskguard is (re)started.
    let since = Instant::now();
    let mut d = Daemon::start(&cfg);
    let writable = loop {
        let (status, _) = put(&addr(&etcd), "probe", b"2");
        if status == 200 {
            break since.elapsed();
        }
        if since.elapsed() > Duration::from_secs(30) {
            d.drain_for(Duration::from_millis(100));
            panic!(
                "still not writable after 30 s; diskguard said:\n{}",
                d.seen.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("writable again {writable:?} after the keys were deleted");
    d.wait_for("disarmed etcd's NOSPACE alarm", Duration::from_secs(5));
    assert!(d.count("compacted etcd to revision") >= 1);
    assert!(
        d.count("defragmenting this etcd member") == 1,
        "{}",
        d.seen.join("\n")
    );
    assert_eq!(alarms(&addr(&etcd)), Value::Null, "no alarm left");
    assert!(
        etcd.log().contains("finished defragment"),
        "etcd's log shows the defragment"
    );
    d.stop();
}

#[test]
fn data_dir_comes_from_etcds_unit_unless_written_and_auto_watches_what_answers() {
    let etcd = Etcd::start(QUOTA);
    let fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let units = tmp.path().join("systemd");
    std::fs::create_dir_all(units.join("etcd2.service.d")).expect("mkdir");
    std::fs::write(
        units.join("etcd2.service"),
        "[Service]\nEnvironment=ETCD_DATA_DIR=/var/lib/etcd2\n",
    )
    .expect("unit");
    let on_docker = fs.path().join("etcd2");
    std::fs::create_dir_all(&on_docker).expect("mkdir");
    std::fs::write(
        units.join("etcd2.service.d/40-dir.conf"),
        format!(
            "[Service]\nEnvironment=\"ETCD_DATA_DIR={}\"\n",
            on_docker.display()
        ),
    )
    .expect("drop-in");
    let write = |etcd_keys: &str| {
        let path = tmp.path().join("auto.toml");
        std::fs::write(
            &path,
            format!(
                "[docker]\nroot = {:?}\nhost = \"unix:///nonexistent/docker.sock\"\n[ecs]\nenabled = false\n\
                 [host]\nsystemd_dirs = [{:?}]\n[etcd]\n{etcd_keys}",
                fs.path().display().to_string(),
                units.display().to_string(),
            ),
        )
        .expect("config");
        path
    };
    // Discovered from the drop-in: on Docker's loop fs, and status and check say so.
    let cfg = write(&format!("endpoint = {:?}\n", etcd.client_url()));
    let json = status_json(&cfg);
    assert_eq!(
        json["etcd"]["data_dir"],
        on_docker.display().to_string(),
        "{json:#}"
    );
    assert!(
        json["etcd"]["data_dir_source"]
            .as_str()
            .is_some_and(|s| s.ends_with("etcd2.service")),
        "{json:#}"
    );
    assert_eq!(json["etcd"]["shares_docker_fs"], true);
    let check = diskguard(&cfg, &["check"]);
    assert!(String::from_utf8_lossy(&check.stdout).contains("on Docker's filesystem"));
    // Written in the config: it wins.
    let written = write(&format!(
        "endpoint = {:?}\ndata_dir = {:?}\n",
        etcd.client_url(),
        etcd.data_dir().display().to_string()
    ));
    let json = status_json(&written);
    assert_eq!(json["etcd"]["data_dir_source"], "config");
    assert_eq!(json["etcd"]["shares_docker_fs"], false);
    // "auto" with a data dir that exists and nothing answering: watched, and says why.
    let down = write("endpoint = \"http://127.0.0.1:9\"\n");
    let json = status_json(&down);
    assert_eq!(json["etcd"]["reachable"], false, "{json:#}");
    // "auto" with neither: not watched at all.
    std::fs::remove_dir(&on_docker).expect("rmdir");
    let json = status_json(&down);
    assert_eq!(json["etcd"], Value::Null, "{json:#}");
    // "auto" with no data dir, but an etcd that answers: watched.
    let answers = write(&format!("endpoint = {:?}\n", etcd.client_url()));
    assert_eq!(status_json(&answers)["etcd"]["reachable"], true);
}

#[test]
fn observe_mode_with_maintenance_on_says_what_it_would_do_and_changes_nothing() {
    let etcd = Etcd::start(QUOTA);
    let fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), fs.path(), &etcd, "maintenance = true\n");
    // `mode` is a top-level key: before the first table.
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(&cfg, format!("mode = \"observe\"\n{text}")).expect("config");
    // The state in which maintenance compacts, defragments and disarms at once.
    fill_until_nospace(&addr(&etcd));
    assert!(delete_fill(&addr(&etcd)) > 0);
    let (db_before, alarms_before) = (db_bytes(&addr(&etcd)), alarms(&addr(&etcd)));
    assert_eq!(alarms_before[0]["alarm"], "NOSPACE", "{alarms_before}");

    let mut d = Daemon::start(&cfg);
    let (_, line) = d.wait_for("observe mode: etcd's database", Duration::from_secs(20));
    for said in ["would compact", "NOSPACE", "changing nothing"] {
        assert!(line.contains(said), "{said} in {line}");
    }
    // Several reads later: each set of steps said once (a later read may find the db
    // fragmented, which adds a step), nothing done.
    d.drain_for(Duration::from_secs(5));
    let said: Vec<&str> = d
        .seen
        .iter()
        .filter_map(|l| {
            l.split_once("observe mode: etcd's database")
                .map(|(_, m)| m)
        })
        .collect();
    let distinct: std::collections::BTreeSet<&str> = said.iter().copied().collect();
    assert_eq!(said.len(), distinct.len(), "{}", d.seen.join("\n"));
    assert!(said.len() <= 2, "{}", d.seen.join("\n"));
    assert_eq!(d.count("compacted etcd"), 0);
    assert_eq!(d.count("defragmenting this etcd member"), 0);
    d.stop();

    assert_eq!(
        alarms(&addr(&etcd)),
        alarms_before,
        "the alarm is still raised"
    );
    assert_eq!(
        put(&addr(&etcd), "probe", b"1").0,
        429,
        "still refusing writes"
    );
    // A defragment would shrink the file; etcd's own commits may grow it a little.
    let db_after = db_bytes(&addr(&etcd));
    assert!(
        db_after >= db_before,
        "defragmented: {db_before} → {db_after} bytes"
    );
    // Not compacted: the revision before the deletes can still be read.
    let old = revision(&addr(&etcd)) - 1;
    let r = support::etcd::member::request(
        &addr(&etcd),
        "POST",
        "/v3/kv/range",
        &format!(
            "{{\"key\":\"{}\",\"range_end\":\"{}\",\"revision\":\"{old}\",\"count_only\":true}}",
            b64(b"fill/"),
            b64(b"fill0")
        ),
    );
    assert_eq!(
        r.status,
        200,
        "revision {old} was compacted away: {}",
        r.text()
    );
}
