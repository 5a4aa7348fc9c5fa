//! Each check against a clean host: one change triggers exactly its finding, and its fix
//! clears it again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::asg::Group;
use crate::doctor::{FsFacts, IDS, Outcome, UnitFacts, WARNING_IDS};

fn fs(device: u64, used_percent: u64, inodes_used_percent: u64) -> FsStats {
    FsStats {
        total_bytes: 100,
        free_bytes: 100 - used_percent,
        avail_bytes: 100 - used_percent,
        total_inodes: 100,
        free_inodes: 100 - inodes_used_percent,
        device,
    }
}

fn facts(path: &str, stats: FsStats) -> Option<FsFacts> {
    Some(FsFacts {
        path: PathBuf::from(path),
        stats,
    })
}

fn container(name: &str, tags: &[&str], max_size: Option<&str>) -> ContainerFacts {
    ContainerFacts {
        name: name.into(),
        image: tags
            .first()
            .map_or("sha256:abc".to_owned(), |t| (*t).to_owned()),
        image_tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        log_driver: "json-file".into(),
        log_options: max_size
            .map(|m| BTreeMap::from([("max-size".to_owned(), m.to_owned())]))
            .unwrap_or_default(),
        task_family: None,
        log_bytes: None,
    }
}

/// A host with every good default: no finding.
fn clean() -> Inputs {
    Inputs {
        daemon_json_path: "/etc/docker/daemon.json".into(),
        daemon_json: Some(serde_json::json!({"log-opts": {"max-size": "10m"}})),
        ecs_config_path: "/etc/ecs/ecs.config".into(),
        ecs_config: Some(BTreeMap::from([
            ("ECS_CLUSTER".to_owned(), "prod".to_owned()),
            ("ECS_IMAGE_CLEANUP_INTERVAL".to_owned(), "10m".to_owned()),
        ])),
        docker_root: facts("/var/lib/docker", fs(2, 50, 50)),
        root_fs: facts("/", fs(1, 85, 10)),
        etcd_dir: facts("/var/lib/etcd", fs(3, 10, 10)),
        containers: Some(vec![container(
            "web",
            &["repo/web:1.4.2", "repo/web:latest"],
            Some("10m"),
        )]),
        unit_name: "diskguard.service".into(),
        unit: Some(UnitFacts {
            path: "/etc/systemd/system/diskguard.service".into(),
            watchdog_sec: Some("30s".into()),
        }),
        auto_scaling: AutoScalingFacts::InGroup {
            instance_id: "i-0123456789abcdef0".into(),
            group: group(true),
        },
        not_checked: Vec::new(),
    }
}

fn group(tagged: bool) -> Group {
    Group {
        name: "ecs-nodes".into(),
        health_check_grace_period: Duration::from_secs(300),
        health_check_type: "EC2".into(),
        lifecycle_state: "InService".into(),
        health_status: "HEALTHY".into(),
        protected_from_scale_in: true,
        tagged_for_escalation: tagged,
    }
}

type Change = fn(&mut Inputs);

#[test]
fn a_clean_host_has_no_findings() {
    assert_eq!(audit(&clean()), Vec::new());
    assert_eq!(warnings(&clean()), Vec::new());
}

#[test]
fn each_warning_is_triggered_by_its_state_and_never_fails_doctor() {
    let rows: Vec<(&str, Change)> = vec![
        ("not-in-auto-scaling-group", |i| {
            i.auto_scaling = AutoScalingFacts::NoGroup {
                instance_id: "i-0123456789abcdef0".into(),
            }
        }),
        ("auto-scaling-group-not-tagged", |i| {
            i.auto_scaling = AutoScalingFacts::InGroup {
                instance_id: "i-0123456789abcdef0".into(),
                group: group(false),
            }
        }),
    ];
    let covered: Vec<&str> = rows.iter().map(|r| r.0).collect();
    assert_eq!(covered, WARNING_IDS, "one row per id, in order");
    for (id, change) in rows {
        let mut inputs = clean();
        change(&mut inputs);
        let found = warnings(&inputs);
        assert_eq!(found.iter().map(|f| f.id).collect::<Vec<_>>(), vec![id]);
        assert!(!found[0].fix.contains('\n'), "{:?}", found[0]);
        assert_eq!(found[0].docs, format!("docs/doctor.md#{id}"));
        let outcome = Outcome::of(inputs);
        assert_eq!(outcome.exit_code(), 0, "{id} is a warning, not a finding");
        assert!(outcome.to_text().contains(&format!("warning [{id}]")));
    }
}

#[test]
fn not_in_a_group_says_escalation_is_unavailable_and_a_group_is_named_with_its_grace_period() {
    let mut i = clean();
    i.auto_scaling = AutoScalingFacts::NoGroup {
        instance_id: "i-0123456789abcdef0".into(),
    };
    let w = &warnings(&i)[0];
    assert!(
        w.problem
            .starts_with("escalation unavailable: not in an Auto Scaling group"),
        "{}",
        w.problem
    );
    assert_eq!(Outcome::of(i).auto_scaling_group, None);

    let text = Outcome::of(clean()).to_text();
    assert!(
        text.contains("Auto Scaling group: ecs-nodes (instance i-0123456789abcdef0, health check EC2, grace period 5m)"),
        "{text}"
    );
    let json = serde_json::to_value(Outcome::of(clean())).expect("plain data");
    assert_eq!(
        json["auto_scaling_group"]["health_check_grace_period_seconds"],
        300
    );
    assert_eq!(json["findings"], serde_json::json!([]));
    assert_eq!(json["warnings"], serde_json::json!([]));
}

#[test]
fn an_unread_group_is_neither_a_warning_nor_a_group() {
    let mut i = clean();
    i.auto_scaling = AutoScalingFacts::Unknown;
    i.not_checked.push("Auto Scaling group: Auto Scaling DescribeAutoScalingInstances for instance i-1: AccessDenied".into());
    let outcome = Outcome::of(i);
    assert!(outcome.warnings.is_empty() && outcome.auto_scaling_group.is_none());
    assert!(outcome.to_text().ends_with("not checked: Auto Scaling group: Auto Scaling DescribeAutoScalingInstances for instance i-1: AccessDenied\n"));
}

#[test]
fn each_finding_is_triggered_by_its_default_and_cleared_by_its_fix() {
    let rows: Vec<(&str, Change, Change)> = vec![
        (
            "docker-log-no-max-size",
            |i| i.daemon_json = None,
            |i| {
                i.daemon_json =
                    Some(serde_json::json!({"log-opts": {"max-size": "10m", "max-file": "3"}}))
            },
        ),
        (
            "etcd-shares-docker-fs",
            |i| i.etcd_dir = facts("/var/lib/docker/etcd", fs(2, 50, 50)),
            |i| i.etcd_dir = facts("/var/lib/etcd", fs(3, 0, 0)),
        ),
        (
            "docker-root-on-root-fs",
            |i| i.docker_root = facts("/var/lib/docker", fs(1, 85, 10)),
            |i| i.docker_root = facts("/var/lib/docker", fs(2, 85, 10)),
        ),
        (
            "ecs-image-cleanup-defaults",
            |i| {
                i.ecs_config
                    .as_mut()
                    .map(|e| e.remove("ECS_IMAGE_CLEANUP_INTERVAL"));
            },
            |i| {
                i.ecs_config
                    .as_mut()
                    .map(|e| e.insert("ECS_IMAGE_CLEANUP_INTERVAL".into(), "10m".into()));
            },
        ),
        (
            "ecs-image-cleanup-disabled",
            |i| {
                i.ecs_config
                    .as_mut()
                    .map(|e| e.insert("ECS_DISABLE_IMAGE_CLEANUP".into(), "true".into()));
            },
            |i| {
                i.ecs_config
                    .as_mut()
                    .map(|e| e.remove("ECS_DISABLE_IMAGE_CLEANUP"));
            },
        ),
        (
            "ecs-prefer-cached",
            |i| {
                i.ecs_config
                    .as_mut()
                    .map(|e| e.insert("ECS_IMAGE_PULL_BEHAVIOR".into(), "prefer-cached".into()));
            },
            |i| {
                i.ecs_config
                    .as_mut()
                    .map(|e| e.insert("ECS_IMAGE_PULL_BEHAVIOR".into(), "default".into()));
            },
        ),
        (
            "image-latest-only",
            |i| {
                i.containers.as_mut().expect("list").push(container(
                    "cron",
                    &["repo/cron:latest"],
                    Some("10m"),
                ))
            },
            |i| {
                i.containers.as_mut().expect("list").pop();
            },
        ),
        (
            "container-log-no-limit",
            |i| {
                i.containers
                    .as_mut()
                    .expect("list")
                    .push(container("chatty", &["repo/c:2"], None))
            },
            |i| {
                i.containers.as_mut().expect("list")[1]
                    .log_options
                    .insert("max-size".into(), "10m".into())
                    .map_or((), |_| ())
            },
        ),
        (
            "inode-headroom-low",
            |i| i.docker_root = facts("/var/lib/docker", fs(2, 50, 95)),
            |i| i.docker_root = facts("/var/lib/docker", fs(2, 50, 60)),
        ),
        (
            "diskguard-unit-missing",
            |i| i.unit = None,
            |i| {
                i.unit = Some(UnitFacts {
                    path: "/etc/systemd/system/diskguard.service".into(),
                    watchdog_sec: Some("30s".into()),
                })
            },
        ),
        (
            "diskguard-unit-no-watchdog",
            |i| i.unit.as_mut().expect("unit").watchdog_sec = None,
            |i| i.unit.as_mut().expect("unit").watchdog_sec = Some("30s".into()),
        ),
    ];
    let covered: Vec<&str> = rows.iter().map(|r| r.0).collect();
    assert_eq!(covered, IDS, "one row per id, in order");
    for (id, break_it, fix_it) in rows {
        let mut inputs = clean();
        break_it(&mut inputs);
        let found: Vec<&str> = audit(&inputs).iter().map(|f| f.id).collect();
        assert_eq!(found, vec![id], "triggering {id}");
        let f = &audit(&inputs)[0];
        assert!(
            !f.problem.is_empty() && !f.fix.is_empty() && !f.fix.contains('\n'),
            "{f:?}"
        );
        assert_eq!(f.docs, format!("docs/doctor.md#{id}"));
        fix_it(&mut inputs);
        assert_eq!(audit(&inputs), Vec::new(), "fixing {id}");
    }
}

#[test]
fn latest_means_the_tag_not_a_registry_port() {
    assert!(only_latest(&container("a", &["repo/app:latest"], None)));
    assert!(
        only_latest(&container("a", &["repo/app"], None)),
        "no tag reads as latest"
    );
    assert!(!only_latest(&container(
        "a",
        &["registry:5000/app:1.2"],
        None
    )));
    assert!(only_latest(&container("a", &["registry:5000/app"], None)));
    assert!(
        !only_latest(&container("a", &["repo/app@sha256:abc"], None)),
        "a digest pins it"
    );
}

#[test]
fn ecs_checks_need_an_ecs_config_and_a_watchdog_of_zero_is_off() {
    let mut i = clean();
    i.ecs_config = None;
    assert!(
        audit(&i).is_empty(),
        "not an ECS host: nothing to say about the agent"
    );
    i.unit.as_mut().expect("unit").watchdog_sec = Some("0".into());
    assert_eq!(audit(&i)[0].id, "diskguard-unit-no-watchdog");
}

#[test]
fn unlimited_logs_are_named_largest_first_with_their_family_and_both_fixes() {
    let mut i = clean();
    let mut small = container("small", &["repo/a:1"], None);
    small.log_bytes = Some(2 << 20);
    let mut flood = container("flood", &["repo/b:1"], None);
    flood.log_bytes = Some(3 << 30);
    flood.task_family = Some("chatty-task".into());
    let limited = container("tidy", &["repo/c:1"], Some("10m"));
    i.containers = Some(vec![small, flood, limited]);
    let f = audit(&i)
        .into_iter()
        .find(|f| f.id == "container-log-no-limit")
        .expect("the finding");
    assert!(
        f.problem
            .ends_with("flood (task chatty-task, log 3.0 GiB), small (log 2.0 MiB)"),
        "{}",
        f.problem
    );
    for fix in [
        "max-size",
        "max-file",
        "new containers only",
        "logConfiguration",
    ] {
        assert!(f.fix.contains(fix), "{fix} in {}", f.fix);
    }
}
