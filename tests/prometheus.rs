//! `[prometheus] listen` end to end: `diskguard run` in local mode on a loop filesystem (no
//! Docker, no AWS) serves `/metrics`; `promtool check metrics` finds nothing to say about it;
//! a real Prometheus (Debian's) scrapes it every second, evaluates the alert rules of
//! packaging/prometheus against it, and gives the series back through its HTTP API — the
//! level condition following the disk as it fills. The endpoint answers on its configured
//! address only. Run as root after `scripts/test-deps.sh` (prometheus, promtool).

use diskguard_testkit as support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::LoopFs;
use support::processes::daemon::Daemon;
use support::processes::peer::{
    Bin, HttpResponse, PeerProcess, binary, free_port, http_tcp, temp_dir, wait_until,
};

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/prometheus/diskguard-rules.yml"
);

fn get(addr: &str, path: &str) -> Option<HttpResponse> {
    http_tcp(addr, "GET", path, &[], b"").ok()
}

/// `promql` evaluated now by the Prometheus at `prom`: the result vector.
fn query(prom: &str, promql: &str) -> Vec<Value> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let r = get(prom, &format!("/api/v1/query?query={encoded}"))
        .unwrap_or_else(|| panic!("Prometheus at {prom} does not answer"));
    let body: Value = serde_json::from_slice(&r.body).expect("the query API answers JSON");
    assert_eq!(body["status"], "success", "{promql}: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The value of a one-sample instant vector.
fn scalar(result: &[Value]) -> Option<f64> {
    match result {
        [one] => one["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

fn write_config(dir: &Path, root: &Path, listen: &str) -> std::path::PathBuf {
    let path = dir.join("diskguard.toml");
    std::fs::write(
        &path,
        format!(
            // A socket that does not exist: the sampling loop alone, never the host's Docker.
            "[sample]\ninterval = \"200ms\"\n[docker]\nroot = {:?}\nhost = \"unix:///nonexistent/docker.sock\"\n\
             [etcd]\nenabled = false\n[ecs]\nenabled = false\n[cloudwatch]\nenabled = false\n\
             [prometheus]\nlisten = \"{listen}\"\n",
            root.display().to_string()
        ),
    )
    .expect("config written");
    path
}

/// `promtool check metrics` on `text`: its findings (empty when clean).
fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new(binary(Bin::Promtool))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())
        .expect("metrics written to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said.trim().to_owned())
}

/// A Prometheus scraping `target` every second with diskguard's alert rules loaded.
fn start_prometheus(dir: &Path, target: &str) -> (PeerProcess, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {RULES}\n\
             scrape_configs:\n  - job_name: diskguard\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("prometheus.yml written");
    let args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address={listen}"),
    ];
    let mut prom = PeerProcess::spawn(
        "prometheus",
        &binary(Bin::Prometheus),
        &args,
        &dir.join("prometheus.log"),
        &[],
    );
    prom.wait_ready(Duration::from_secs(30), || {
        get(&listen, "/-/ready").is_some_and(|r| r.status == 200)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    (prom, listen)
}

#[test]
fn a_real_prometheus_scrapes_the_endpoint_and_reads_the_level_back() {
    let mut fs = LoopFs::new(64);
    let dir = temp_dir("prometheus");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let config = write_config(dir.path(), fs.path(), &listen);
    let mut daemon = Daemon::start(&config);
    daemon.wait_for(
        &format!("serving Prometheus metrics on http://{listen}/metrics"),
        Duration::from_secs(10),
    );

    // The text format, as curl and promtool get it, with node_exporter's labels.
    let scraped = wait_until("volume series on /metrics", Duration::from_secs(10), || {
        get(&listen, "/metrics")
            .filter(|r| r.status == 200 && r.text().contains("diskguard_filesystem_size_bytes{"))
    });
    assert!(
        scraped
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        scraped.headers
    );
    let text = scraped.text();
    let (clean, said) = promtool_check_metrics(&text);
    assert!(
        clean && said.is_empty(),
        "promtool check metrics: {said}\n{text}"
    );
    let mountpoint = fs.path().canonicalize().expect("the mount point exists");
    let labels = format!(
        "{{device=\"{}\",mountpoint=\"{}\",fstype=\"ext4\",volume=\"docker\"}}",
        fs.device(),
        mountpoint.display()
    );
    let size_line = format!("diskguard_filesystem_size_bytes{labels} ");
    let size: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&size_line))
        .unwrap_or_else(|| panic!("no {size_line} in\n{text}"))
        .parse()
        .expect("a number");
    assert!(
        text.contains(&format!(
            "diskguard_volume_level{{device=\"{}\",mountpoint=\"{}\",fstype=\"ext4\",volume=\"docker\",level=\"ok\"}} 1",
            fs.device(),
            mountpoint.display()
        )),
        "{text}"
    );
    assert!(!text.lines().any(|l| l.starts_with("node_")), "{text}");
    assert_eq!(get(&listen, "/").map(|r| r.status), Some(404));

    // Only on the configured address: not on the rest of loopback, not on IPv6.
    for other in [format!("127.0.0.2:{port}"), format!("[::1]:{port}")] {
        let addr: SocketAddr = other.parse().expect("an address");
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
            "{other} answers; only {listen} should"
        );
    }

    let (mut prom, prom_addr) = start_prometheus(dir.path(), &listen);
    let promql = "diskguard_filesystem_size_bytes{volume=\"docker\",fstype=\"ext4\"}";
    let read = wait_until(
        "Prometheus to have scraped diskguard",
        Duration::from_secs(30),
        || scalar(&query(&prom_addr, promql)),
    );
    assert_eq!(read, size, "what Prometheus stored is what /metrics said");

    // Prometheus asked for OpenMetrics (its first choice) and got it: only that format
    // carries the `# UNIT` that its metadata API reports.
    let meta = get(
        &prom_addr,
        "/api/v1/metadata?metric=diskguard_filesystem_size_bytes",
    )
    .expect("metadata API");
    let meta: Value = serde_json::from_slice(&meta.body).expect("JSON");
    assert_eq!(
        meta["data"]["diskguard_filesystem_size_bytes"][0]["unit"], "bytes",
        "{meta}"
    );
    let targets = get(&prom_addr, "/api/v1/targets").expect("targets API");
    let targets: Value = serde_json::from_slice(&targets.body).expect("JSON");
    let target = &targets["data"]["activeTargets"][0];
    assert_eq!(target["health"], "up", "{targets}");
    assert_eq!(target["lastError"], "", "{targets}");

    // Every rule of the shipped file evaluates cleanly against the real series.
    wait_until(
        "every alert rule evaluated with health ok",
        Duration::from_secs(20),
        || {
            let r = get(&prom_addr, "/api/v1/rules")?;
            let body: Value = serde_json::from_slice(&r.body).ok()?;
            let rules: Vec<Value> = body["data"]["groups"]
                .as_array()?
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            (rules.len() == 10 && rules.iter().all(|r| r["health"] == "ok")).then_some(())
        },
    );

    // The level condition follows the disk: past prune_start (80 %), `prune` is the one at 1.
    fs.fill_to_used_percent(85.0);
    wait_until(
        "Prometheus to read level prune",
        Duration::from_secs(20),
        || {
            let prune = scalar(&query(
                &prom_addr,
                "diskguard_volume_level{volume=\"docker\",level=\"prune\"}",
            ))?;
            let ok = scalar(&query(
                &prom_addr,
                "diskguard_volume_level{volume=\"docker\",level=\"ok\"}",
            ))?;
            (prune == 1.0 && ok == 0.0).then_some(())
        },
    );

    prom.stop(Duration::from_secs(5));
    daemon.stop();
}
