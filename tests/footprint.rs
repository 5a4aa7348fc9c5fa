//! Footprint, side by side in one run (`make footprint`; not part of `make test`):
//! `diskguard run` (release build) watching a private dockerd with 100 images and 20
//! running containers, with ECS (moto, the ECS agent's introspection, IMDS) and
//! CloudWatch (the CloudWatch test peer) on, next to Debian's
//! `prometheus-node-exporter` with only its filesystem collector, on the same volume,
//! scraped every second. Over the same window: steady RSS and CPU % of one core of each;
//! also start to READY and the stripped binary sizes. Prints a table for BENCHMARKS.md.
//!
//! `DISKGUARD_FOOTPRINT_SECS` sets the measured window (default 300), after a warm-up of
//! a quarter of it (at most 60 s). `DISKGUARD_FOOTPRINT_BIN` names the diskguard binary to
//! measure (`make footprint` passes the static release it builds, the binary that ships);
//! without it, the test measures the release build cargo made for it.

use diskguard_testkit as support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::aws::cwpeer::CwPeer;
use support::aws::ecs_agent::{AgentMode, EcsAgent};
use support::aws::ecs_world::{EcsWorld, REGION};
use support::aws::imds::{Imds, InstanceIdentity};
use support::docker::images::{ContainerOpts, import_image, run_container};
use support::network::http_client::http_tcp;
use support::processes::notify::NotifySocket;
use support::processes::peer::free_port;
use support::processes::procstat::{cpu_time, peak_rss_kib, rss_kib, status_kib, threads};
use support::{Dockerd, LoopFsOptions, Moto};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
/// A common `WatchdogSec=` for an agent like this one; diskguard pings at half of it.
const WATCHDOG: Duration = Duration::from_secs(30);

/// A Go regular expression (RE2: no look-ahead) that matches every mount point except
/// `keep`: node_exporter 1.5 can only exclude mount points, and the other ext4 loop
/// mounts on this machine must not count. Built from the end of `keep`: a string that is
/// not `keep[i..]` is empty, differs at its first character, or has that character
/// followed by a string that is not `keep[i+1..]`.
fn all_but(keep: &str) -> String {
    let mut tail = ".+".to_owned();
    for c in keep.chars().rev() {
        tail = format!("(|[^{}].*|{}{tail})", class_quote(c), regex_quote(c));
    }
    format!("^{tail}$")
}

fn regex_quote(c: char) -> String {
    if "\\.+*?()|[]{}^$".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

fn class_quote(c: char) -> String {
    if "\\]^-[".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

/// One process's numbers over the window.
#[derive(Debug, Default)]
struct Measured {
    rss: Vec<u64>,
    cpu: Duration,
    threads: u64,
}

impl Measured {
    fn median_mib(&self) -> f64 {
        let mut v = self.rss.clone();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or_default() as f64 / 1024.0
    }
    fn max_mib(&self) -> f64 {
        self.rss.iter().max().copied().unwrap_or_default() as f64 / 1024.0
    }
    fn cpu_percent(&self, window: Duration) -> f64 {
        100.0 * self.cpu.as_secs_f64() / window.as_secs_f64()
    }
}

fn stripped_size(binary: &Path, dir: &Path) -> u64 {
    let copy = dir.join("stripped");
    std::fs::copy(binary, &copy).expect("copy binary");
    let ok = Command::new("strip")
        .arg(&copy)
        .status()
        .expect("strip (binutils) runs");
    assert!(ok.success(), "strip {}", copy.display());
    std::fs::metadata(&copy).expect("stat").len()
}

/// The binary measured: `DISKGUARD_FOOTPRINT_BIN`, or the one cargo built for this test.
fn diskguard_binary() -> PathBuf {
    std::env::var_os("DISKGUARD_FOOTPRINT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_diskguard")))
}

struct Agent {
    child: Child,
    ready_after: Duration,
}

fn start_diskguard(config: &Path, env: &[(&str, String)], log: &Path) -> Agent {
    let notify = NotifySocket::bind();
    let log = std::fs::File::create(log).expect("log file");
    let started = Instant::now();
    let mut cmd = Command::new(diskguard_binary());
    cmd.arg("--config")
        .arg(config)
        .arg("run")
        .env_remove("JOURNAL_STREAM")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .stderr(Stdio::from(log));
    for (k, v) in notify.env(WATCHDOG) {
        cmd.env(k, v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("diskguard starts");
    let ready = notify.wait_for("READY=1", Duration::from_secs(30));
    Agent {
        child,
        ready_after: ready - started,
    }
}

fn stop(child: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

fn write_config(dir: &Path, d: &Dockerd, introspection: &str) -> PathBuf {
    let path = dir.join("diskguard.toml");
    // Defaults but for where the peers are: 1 s sampling, inventory every 30 s, ECS
    // every minute, CloudWatch every minute.
    std::fs::write(
        &path,
        format!(
            "[docker]\nhost = {:?}\nroot = {:?}\n[etcd]\nenabled = false\n\
             [ecs]\nintrospection_url = {introspection:?}\n[cloudwatch]\nenabled = true\n",
            d.docker_host(),
            d.data_root().display().to_string()
        ),
    )
    .expect("config");
    path
}

#[test]
#[ignore = "about 7 minutes: run with `make footprint` (DISKGUARD_FOOTPRINT_SECS to shorten)"]
fn footprint_next_to_node_exporter() {
    assert!(
        Path::new(NODE_EXPORTER).exists(),
        "{NODE_EXPORTER} not found: run `make footprint` (it installs Debian's prometheus-node-exporter) or `apt-get install prometheus-node-exporter`"
    );
    let window = Duration::from_secs(
        std::env::var("DISKGUARD_FOOTPRINT_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
    );
    let warmup = (window / 4).min(Duration::from_secs(60));

    let d = Dockerd::start_on_loopfs(&LoopFsOptions::new(1024));
    let made = Instant::now();
    let mut images = Vec::new();
    for i in 0..100 {
        images.push(import_image(&d, &format!("img{i}:v1"), 64 * 1024));
    }
    for (i, image) in images.iter().take(20).enumerate() {
        run_container(&d, image, &ContainerOpts::named(&format!("c{i}")));
    }
    println!(
        "docker: 100 images, 20 running containers in {:.0}s",
        made.elapsed().as_secs_f64()
    );
    let moto = Moto::start();
    let world = EcsWorld::seed(&moto, "prod", 3);
    let me = world.members()[0].clone();
    let agent = EcsAgent::start(AgentMode::healthy(world.cluster(), &me.arn));
    let imds = Imds::start(InstanceIdentity::new(&me.ec2_instance_id, REGION));
    let cw = CwPeer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = write_config(tmp.path(), &d, &agent.url());
    let env = vec![
        ("AWS_ENDPOINT_URL_ECS", moto.endpoint()),
        ("AWS_ENDPOINT_URL_CLOUDWATCH", cw.endpoint()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ];

    // Start to READY, five times (the first is the one measured below).
    let log = tmp.path().join("diskguard.log");
    let mut readies = Vec::new();
    for _ in 0..4 {
        let mut a = start_diskguard(&config, &env, &log);
        readies.push(a.ready_after);
        stop(&mut a.child);
    }
    let mut dg = start_diskguard(&config, &env, &log);
    readies.push(dg.ready_after);
    let dg_pid = dg.child.id();

    let port = free_port();
    let volume = d.loopfs().expect("loop fs").path().display().to_string();
    let ne_started = Instant::now();
    let mut ne = Command::new(NODE_EXPORTER)
        .args([
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--collector.disable-defaults".into(),
            "--collector.filesystem".into(),
            format!(
                "--collector.filesystem.mount-points-exclude={}",
                all_but(&volume)
            ),
            "--web.disable-exporter-metrics".into(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node_exporter starts");
    let ne_pid = ne.id();
    let addr = format!("127.0.0.1:{port}");
    let first_scrape = loop {
        if let Ok(r) = http_tcp(&addr, "GET", "/metrics", &[], b"") {
            if r.status == 200 {
                break r.text();
            }
        }
        assert!(
            ne_started.elapsed() < Duration::from_secs(20),
            "node_exporter did not answer"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let ne_ready = ne_started.elapsed();
    let filesystems: Vec<&str> = first_scrape
        .lines()
        .filter(|l| l.starts_with("node_filesystem_avail_bytes{"))
        .collect();
    assert_eq!(
        filesystems.len(),
        1,
        "node_exporter watches the one volume: {filesystems:#?}"
    );
    assert!(filesystems[0].contains(&volume), "{}", filesystems[0]);

    let stop_scraping = AtomicBool::new(false);
    let scrapes = AtomicU64::new(0);
    let (mut dgm, mut nem) = (Measured::default(), Measured::default());
    std::thread::scope(|s| {
        // A scrape a second, as a 1 s Prometheus scrape interval (a new connection each,
        // as a curl loop would).
        s.spawn(|| {
            while !stop_scraping.load(Ordering::Relaxed) {
                let t = Instant::now();
                if http_tcp(&addr, "GET", "/metrics", &[], b"").is_ok_and(|r| r.status == 200) {
                    scrapes.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()));
            }
        });
        std::thread::sleep(warmup);
        let (dg0, ne0) = (cpu_time(dg_pid), cpu_time(ne_pid));
        let began = Instant::now();
        while began.elapsed() < window {
            dgm.rss.extend(rss_kib(dg_pid));
            nem.rss.extend(rss_kib(ne_pid));
            dgm.threads = dgm.threads.max(threads(dg_pid).unwrap_or(0));
            nem.threads = nem.threads.max(threads(ne_pid).unwrap_or(0));
            std::thread::sleep(Duration::from_secs(1));
        }
        let measured = began.elapsed();
        dgm.cpu = cpu_time(dg_pid).unwrap_or_default() - dg0.unwrap_or_default();
        nem.cpu = cpu_time(ne_pid).unwrap_or_default() - ne0.unwrap_or_default();
        stop_scraping.store(true, Ordering::Relaxed);
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        let dg_size = stripped_size(&diskguard_binary(), &bin);
        let ne_size = std::fs::metadata(NODE_EXPORTER).expect("stat").len();
        readies.sort_unstable();
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        println!(
            "\nmeasured over {:.0}s after a {:.0}s warm-up; {} scrapes of node_exporter; PutMetricData calls: {}",
            measured.as_secs_f64(),
            warmup.as_secs_f64(),
            scrapes.load(Ordering::Relaxed),
            cw.calls("PutMetricData")
        );
        println!("diskguard binary: {}", diskguard_binary().display());
        println!("| | diskguard run | node_exporter (filesystem only) |");
        println!("|---|---|---|");
        println!(
            "| steady RSS (median) | {:.1} MiB | {:.1} MiB |",
            dgm.median_mib(),
            nem.median_mib()
        );
        println!(
            "| RSS max in window | {:.1} MiB | {:.1} MiB |",
            dgm.max_mib(),
            nem.max_mib()
        );
        println!(
            "| CPU, % of one core | {:.3} % | {:.3} % |",
            dgm.cpu_percent(measured),
            nem.cpu_percent(measured)
        );
        println!(
            "| start to ready | {} ms (median of {}: {:?}) | {} ms (to first scrape) |",
            readies[readies.len() / 2].as_millis(),
            readies.len(),
            readies.iter().map(Duration::as_millis).collect::<Vec<_>>(),
            ne_ready.as_millis()
        );
        println!(
            "| binary | {:.1} MiB stripped | {:.1} MiB (Debian's, stripped) |",
            mib(dg_size),
            mib(ne_size)
        );
        println!("| threads | {} | {} |", dgm.threads, nem.threads);
        println!(
            "diskguard detail: VmHWM {} KiB, RssAnon {} KiB, RssFile {} KiB",
            peak_rss_kib(dg_pid).unwrap_or_default(),
            status_kib(dg_pid, "RssAnon:").unwrap_or_default(),
            status_kib(dg_pid, "RssFile:").unwrap_or_default()
        );
        println!(
            "node_exporter detail: VmHWM {} KiB, RssAnon {} KiB, RssFile {} KiB",
            peak_rss_kib(ne_pid).unwrap_or_default(),
            status_kib(ne_pid, "RssAnon:").unwrap_or_default(),
            status_kib(ne_pid, "RssFile:").unwrap_or_default()
        );
    });
    stop(&mut dg.child);
    let _ = ne.kill();
    let _ = ne.wait();
    assert!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("found this ECS container instance"),
        "ECS was on"
    );
}
