//! Two diskguards with maintenance on, each pointed at its own member of a real
//! three-member etcd cluster: never two defragments at once (read from etcd's own logs),
//! and none while the third member is down.

use diskguard_testkit as support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::LoopFs;
use support::etcd::cluster::{Defrag, EtcdCluster};
use support::etcd::fill::{compact_settled, delete_fill, fill_to_percent};
use support::processes::daemon::Daemon;

const QUOTA: u64 = 16 * 1024 * 1024;

fn config(dir: &Path, name: &str, docker_root: &Path, url: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[sample]\ninterval = \"500ms\"\n\
             [docker]\nroot = {:?}\nhost = \"unix:///nonexistent/docker.sock\"\n\
             [ecs]\nenabled = false\n[cloudwatch]\nenabled = false\n\
             [etcd]\nenabled = true\ninterval = \"1s\"\nendpoint = {url:?}\nmaintenance = true\nquota_warn_percent = 50\n",
            docker_root.display().to_string(),
        ),
    )
    .expect("config");
    path
}

fn overlapping(defrags: &[Defrag]) -> Vec<(Defrag, Defrag)> {
    let mut out = Vec::new();
    for (i, a) in defrags.iter().enumerate() {
        for b in &defrags[i + 1..] {
            if a.start_ms <= b.end_ms && b.start_ms <= a.end_ms {
                out.push((*a, *b));
            }
        }
    }
    out
}

#[test]
fn two_diskguards_never_defragment_at_once_and_not_while_a_member_is_down() {
    let mut cluster = EtcdCluster::start(QUOTA);
    println!("3-member cluster ready in {:?}", cluster.startup);
    let m0 = cluster
        .client_url(0)
        .trim_start_matches("http://")
        .to_owned();
    // Over the warn level (50 % here), then deleted: mostly free pages on every member.
    // Well below the quota: each member's db file grows its own way, and one of them at
    // the quota would raise NOSPACE for all.
    fill_to_percent(&m0, QUOTA, 60.0);
    delete_fill(&m0);
    // Compacted and committed here, so every member's in-use size already shows the free
    // pages: without it a quiet cluster may report the deleted data as live for a while
    // (etcd frees a compaction's pages at the next commit), and diskguard rightly says
    // defragmenting cannot help (seen once in a full run).
    compact_settled(&m0);
    cluster.stop(2);

    let fs = LoopFs::new(64);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut guards: Vec<Daemon> = (0..2)
        .map(|i| {
            Daemon::start(&config(
                tmp.path(),
                &format!("dg{i}"),
                fs.path(),
                &cluster.client_url(i),
            ))
        })
        .collect();
    for g in &mut guards {
        g.wait_for(
            "not defragmenting while another member is unhealthy",
            Duration::from_secs(30),
        );
    }
    // A few more reads with m2 down: still none.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        cluster.defrags().is_empty(),
        "defragmented with a member down: {:?}",
        cluster.defrags()
    );

    cluster.restart(2);
    let since = Instant::now();
    while cluster.defrags().iter().filter(|d| d.member < 2).count() < 2 {
        if since.elapsed() > Duration::from_secs(60) {
            let said: Vec<String> = guards
                .iter_mut()
                .flat_map(|g| {
                    g.drain_for(Duration::from_millis(50));
                    g.seen.clone()
                })
                .collect();
            panic!(
                "both members not defragmented within 60 s of m2's return: {:?}\n{}",
                cluster.defrags(),
                said.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("both defragmented {:?} after m2 came back", since.elapsed());
    // Enough reads for a second defragment to show up, if one were coming.
    std::thread::sleep(Duration::from_secs(2));
    let defrags = cluster.defrags();
    println!("defragments (member, start, end): {defrags:?}");
    assert!(
        overlapping(&defrags).is_empty(),
        "two at once: {:?}",
        overlapping(&defrags)
    );
    let waited: usize = guards
        .iter_mut()
        .map(|g| {
            g.drain_for(Duration::from_millis(50));
            g.count("the lock is held by")
        })
        .sum();
    println!("lock contention: {waited} log line(s) of a diskguard waiting for the other");
    for g in guards {
        g.stop();
    }
}
