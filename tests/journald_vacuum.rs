//! `[journald] vacuum_size` (opt-in): when the watched volume holding the journal reaches
//! `prune`, `journalctl --vacuum-size` removes archived journal files, oldest first, down to
//! the size — never the active journal; observe mode only says it would. Against real
//! journal files (written by systemd-journal-remote from export text) on a loop-mounted
//! ext4, and the real journalctl, with `diskguard run` in local mode.

use diskguard_testkit as support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::LoopFs;
use support::processes::daemon::Daemon;

const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";

/// Four archived journal files (~16 MiB each, oldest first by name) and an active one.
fn journal(dir: &Path) -> Vec<PathBuf> {
    assert!(
        Path::new(JOURNAL_REMOTE).exists(),
        "{JOURNAL_REMOTE} is missing: run scripts/test-deps.sh (it installs systemd-journal-remote)"
    );
    std::fs::create_dir_all(dir).expect("journal dir");
    let scratch = tempfile::tempdir().expect("tempdir");
    let export = scratch.path().join("export.txt");
    let mut f = std::fs::File::create(&export).expect("export");
    for i in 0..20_000u64 {
        write!(
            f,
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n_HOSTNAME=test\nMESSAGE=line {i} {}\n\n",
            1_700_000_000_000_000 + i,
            i + 1,
            "x".repeat(400)
        )
        .expect("write");
    }
    drop(f);
    let mut files = Vec::new();
    for n in 1..=5u32 {
        // journald's archived names: system@<seqnum id>-<head seqnum>-<head realtime>.journal.
        let name = if n == 5 {
            "system.journal".to_owned()
        } else {
            format!(
                "system@0123456789abcdef0123456789abcde{n}-000000000000000{n}-0005e0e0e0e0e0e{n}.journal"
            )
        };
        let path = dir.join(name);
        let out = std::process::Command::new(JOURNAL_REMOTE)
            .arg(format!("--output={}", path.display()))
            .arg(&export)
            .output()
            .expect("systemd-journal-remote runs");
        assert!(path.exists(), "{}", String::from_utf8_lossy(&out.stderr));
        files.push(path);
    }
    files
}

fn config(dir: &Path, docker: &Path, watched: &Path, extra: &str) -> PathBuf {
    let path = dir.join("diskguard.toml");
    std::fs::write(
        &path,
        format!(
            "{extra}\n[sample]\ninterval = \"200ms\"\n[docker]\nroot = {:?}\nhost = \"unix:///nonexistent/docker.sock\"\n\
             [etcd]\nenabled = false\n[ecs]\nenabled = false\n[cloudwatch]\nenabled = false\n\
             [journald]\nvacuum_size = \"40MiB\"\ndirectory = {:?}\n\
             [[watch]]\nname = \"journal\"\npath = {:?}\n",
            docker.display().to_string(),
            watched.join("journal").display().to_string(),
            watched.display().to_string(),
        ),
    )
    .expect("config");
    path
}

#[test]
fn the_journal_is_vacuumed_to_its_size_when_its_volume_reaches_prune() {
    let docker = LoopFs::new(64);
    let mut fs = LoopFs::new(128);
    let files = journal(&fs.path().join("journal"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), docker.path(), fs.path(), "");
    let mut d = Daemon::start(&cfg);
    d.said("watching journal", Duration::from_secs(5));
    let before = fs.usage().used_percent();
    // Below prune_start nothing happens.
    d.drain_for(Duration::from_secs(2));
    assert_eq!(d.count("vacuumed the journal"), 0, "{before:.1}%");
    fs.fill_to_used_percent(85.0);
    let (_, line) = d.wait_for("vacuumed the journal", Duration::from_secs(20));
    println!("{line}");
    assert!(line.contains("Vacuuming done, freed"), "{line}");
    let left: Vec<bool> = files.iter().map(|f| f.exists()).collect();
    // Oldest archives first, until all the files (the active one too) take ≤ 40 MiB; the
    // active journal is never removed.
    assert!(left[4], "the active journal stays: {left:?}");
    assert!(!left[0], "the oldest archive went: {left:?}");
    assert!(
        left.windows(2).all(|w| !w[0] || w[1]),
        "removed oldest first: {left:?}"
    );
    let kept: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    assert!(kept <= 40 << 20, "{kept} bytes left");
    let after = fs.usage().used_percent();
    println!(
        "journal volume {before:.1}% before the fill, 85% filled, {after:.1}% after the vacuum"
    );
    assert!(after < 60.0, "{after:.1}%");
    // Not again within five minutes while the volume stays up.
    fs.fill_to_used_percent(85.0);
    d.drain_for(Duration::from_secs(3));
    assert_eq!(d.count("vacuumed the journal"), 1);
    d.stop();
}

#[test]
fn observe_mode_only_says_it_would_vacuum() {
    let docker = LoopFs::new(64);
    let mut fs = LoopFs::new(128);
    let files = journal(&fs.path().join("journal"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), docker.path(), fs.path(), "mode = \"observe\"");
    let mut d = Daemon::start(&cfg);
    d.said("watching journal", Duration::from_secs(5));
    fs.fill_to_used_percent(85.0);
    d.wait_for(
        "observe mode: would vacuum the journal",
        Duration::from_secs(20),
    );
    d.drain_for(Duration::from_secs(2));
    assert!(files.iter().all(|f| f.exists()), "nothing removed");
    assert_eq!(d.count("vacuumed the journal"), 0);
    d.stop();
}
