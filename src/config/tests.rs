use super::*;

fn bad(text: &str) -> (String, String) {
    match parse(Path::new("/etc/diskguard/diskguard.toml"), text) {
        Err(ConfigError::Invalid { key, message, .. }) => (key, message),
        Err(ConfigError::Syntax { message, .. }) => ("(syntax)".into(), message),
        other => panic!("expected an invalid config for {text:?}, got {other:?}"),
    }
}

#[test]
fn empty_file_gives_the_documented_defaults() {
    let s = parse(Path::new("x.toml"), "").expect("empty config is valid");
    assert_eq!(s, Settings::default());
    assert_eq!(s.thresholds.prune_start, 80.0);
    assert_eq!(s.thresholds.prune_target, 70.0);
    assert_eq!(s.thresholds.drain, 90.0);
    assert_eq!(s.thresholds.critical, 95.0);
    assert_eq!(s.thresholds.recover, 75.0);
    assert_eq!(s.sample.interval, std::time::Duration::from_secs(1));
    assert_eq!(s.cloudwatch.namespace, "DiskGuard");
    assert_eq!(s.mode, Mode::Enforce);
    assert_eq!(s.docker.host, None);
}

#[test]
fn defaults_print_as_toml_that_parses_back_to_the_same_settings() {
    let text = defaults_toml();
    let back = parse(Path::new("defaults.toml"), &text).expect("printed defaults parse");
    assert_eq!(back, Settings::default());
}

#[test]
fn non_default_settings_round_trip_through_toml() {
    let text = r#"
mode = "observe"
[sample]
interval = "250ms"
[thresholds]
prune_start = 60.5
prune_target = 55
recover = 50
recover_after = "1h 30m"
[docker]
host = "unix:///run/docker.sock"
protect = ["mine/*:stable"]
min_image_age = "0s"
max_unused_image_age = "14d"
[etcd]
enabled = false
[ecs]
enabled = true
cluster = "prod"
[cloudwatch]
extra_metrics = ["ImageCount"]
[prometheus]
listen = "127.0.0.1:9717"
[escalate]
after = "30m"
max_percent = 15
[journald]
vacuum_size = "500MiB"
directory = "/srv/journal"
[evict]
enabled = false
lead = "2m"
[[watch]]
name = "ecs"
path = "/var/lib/ecs"
[[watch]]
name = "data"
path = "/data"
"#;
    let s = parse(Path::new("x.toml"), text).expect("valid");
    assert_eq!(s.watch.len(), 2);
    let printed = toml::to_string(&s.to_raw()).expect("serialises");
    assert_eq!(
        parse(Path::new("y.toml"), &printed).expect("parses back"),
        s
    );
}

#[test]
fn unknown_key_is_named_with_its_section() {
    let (key, message) = bad("[thresholds]\ndran = 90\n");
    assert_eq!(key, "thresholds.dran");
    assert!(message.contains("unknown key"), "{message}");
    assert_eq!(bad("colour = \"red\"\n").0, "colour");
    assert_eq!(bad("[nope]\n").0, "nope");
}

#[test]
fn each_bad_value_names_its_key() {
    let cases: &[(&str, &str)] = &[
        ("[thresholds]\ndrain = \"ninety\"\n", "thresholds.drain"),
        ("[thresholds]\ndrain = 79\n", "thresholds.prune_start"),
        (
            "[thresholds]\nprune_target = 85\n",
            "thresholds.prune_target",
        ),
        ("[thresholds]\ncritical = 101\n", "thresholds.critical"),
        ("[thresholds]\nrecover = 80\n", "thresholds.recover"),
        ("[thresholds]\nprune_start = -5\n", "thresholds.prune_start"),
        ("[sample]\ninterval = \"0s\"\n", "sample.interval"),
        ("[sample]\ninterval = \"50ms\"\n", "sample.interval"),
        ("[sample]\ninterval = \"soon\"\n", "sample.interval"),
        (
            "[thresholds]\nrecover_after = 300\n",
            "thresholds.recover_after",
        ),
        (
            "[cloudwatch]\nnamespace = \"AWS/EBS\"\n",
            "cloudwatch.namespace",
        ),
        (
            "[cloudwatch]\ndimensions = [\"Pod\"]\n",
            "cloudwatch.dimensions",
        ),
        (
            "[cloudwatch]\nextra_metrics = [\"Everything\"]\n",
            "cloudwatch.extra_metrics",
        ),
        (
            "[prometheus]\nlisten = \"everywhere\"\n",
            "prometheus.listen",
        ),
        ("[etcd]\nenabled = \"yes\"\n", "etcd.enabled"),
        ("mode = \"yolo\"\n", "mode"),
        (
            "[ecs]\nmax_draining_percent = 150\n",
            "ecs.max_draining_percent",
        ),
        ("[ecs]\nidle_read_percent = 0\n", "ecs.idle_read_percent"),
        ("[escalate]\nmax_percent = 101\n", "escalate.max_percent"),
        (
            "[journald]\nvacuum_size = \"lots\"\n",
            "journald.vacuum_size",
        ),
        (
            "[journald]\nvacuum_size = \"100K\"\n",
            "journald.vacuum_size",
        ),
        ("[escalate]\nafter = \"soon\"\n", "escalate.after"),
        ("[docker]\nprotect = \"amazon/*\"\n", "docker.protect"),
        ("[docker]\nprotect = [\"[\"]\n", "docker.protect"),
        ("[docker]\nhost = \"/var/run/docker.sock\"\n", "docker.host"),
        (
            "[cloudwatch]\nmax_buffered_intervals = 0\n",
            "cloudwatch.max_buffered_intervals",
        ),
        (
            "[docker]\nmax_unused_image_age = \"a fortnight\"\n",
            "docker.max_unused_image_age",
        ),
        (
            "[docker]\nmin_image_age = \"-1s\"\n",
            "docker.min_image_age",
        ),
        ("[evict]\nlead = \"0s\"\n", "evict.lead"),
        ("[evict]\nenabled = \"sometimes\"\n", "evict.enabled"),
    ];
    for (text, key) in cases {
        assert_eq!(bad(text).0, *key, "config {text:?}");
    }
}

#[test]
fn a_cluster_name_longer_than_ecs_allows_is_rejected() {
    let text = format!("[ecs]\ncluster = \"{}\"\n", "c".repeat(256));
    assert_eq!(bad(&text).0, "ecs.cluster");
    let ok = format!("[ecs]\ncluster = \"{}\"\n", "c".repeat(255));
    assert!(parse(Path::new("x.toml"), &ok).is_ok());
}

#[test]
fn syntax_error_reports_line_and_column() {
    let err =
        parse(Path::new("/x.toml"), "mode = \"enforce\"\n[thresholds\n").expect_err("bad TOML");
    let text = err.to_string();
    assert!(text.starts_with("config /x.toml: line 2"), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
}

#[test]
fn missing_default_file_means_defaults_but_missing_named_file_is_an_error() {
    let missing = Path::new("/nonexistent/diskguard.toml");
    assert_eq!(load(missing, true).expect("defaults"), Settings::default());
    let err = load(missing, false).expect_err("named file must exist");
    assert!(err.to_string().contains("/nonexistent/diskguard.toml"));
}

#[test]
fn zero_minimum_ages_mean_no_minimum() {
    let s = parse(
        Path::new("x.toml"),
        "[docker]\nmin_image_age = \"0s\"\nstopped_container_age = \"0\"\n",
    )
    .expect("zero ages are valid");
    assert_eq!(s.docker.min_image_age, std::time::Duration::ZERO);
    assert_eq!(s.docker.stopped_container_age, std::time::Duration::ZERO);
    // Other durations still must be longer than zero.
    assert_eq!(
        bad("[thresholds]\ndrain_lead = \"0s\"\n").0,
        "thresholds.drain_lead"
    );
}

#[test]
fn the_maximum_unused_image_age_is_off_unless_set() {
    assert_eq!(Settings::default().docker.max_unused_image_age, None);
    let s = parse(
        Path::new("x.toml"),
        "[docker]\nmax_unused_image_age = \"14d\"\n",
    )
    .expect("valid");
    assert_eq!(
        s.docker.max_unused_image_age,
        Some(std::time::Duration::from_secs(14 * 86_400))
    );
    let off = parse(
        Path::new("x.toml"),
        "[docker]\nmax_unused_image_age = \"\"\n",
    )
    .expect("valid");
    assert_eq!(off.docker.max_unused_image_age, None);
}

#[test]
fn eviction_is_on_by_default_with_a_minute_of_lead() {
    let s = Settings::default();
    assert!(s.evict.on());
    assert_eq!(s.evict.lead, std::time::Duration::from_secs(60));
}

#[test]
fn watches_default_to_the_ecs_state_and_the_root_fs_and_an_empty_list_turns_them_off() {
    let defaults = parse(Path::new("x.toml"), "").expect("valid");
    let names: Vec<(&str, bool)> = defaults
        .watch
        .iter()
        .map(|w| (w.name.as_str(), w.default))
        .collect();
    assert_eq!(names, [("ecs", true), ("root", true)]);
    let none = parse(Path::new("x.toml"), "watch = []\n").expect("valid");
    assert!(none.watch.is_empty());
    let printed = toml::to_string(&none.to_raw()).expect("serialises");
    assert_eq!(
        parse(Path::new("y.toml"), &printed).expect("parses back"),
        none
    );
}

#[test]
fn a_watch_entry_needs_a_free_lowercase_name_and_an_absolute_path() {
    for (entry, key) in [
        ("path = \"/x\"", "watch[0].name"),
        ("name = \"Data\"\npath = \"/x\"", "watch[0].name"),
        ("name = \"docker\"\npath = \"/x\"", "watch[0].name"),
        ("name = \"data\"", "watch[0].path"),
        ("name = \"data\"\npath = \"x\"", "watch[0].path"),
    ] {
        let text = format!("[[watch]]\n{entry}\n");
        match parse(Path::new("x.toml"), &text) {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{entry}"),
            other => panic!("{entry}: {other:?}"),
        }
    }
}
