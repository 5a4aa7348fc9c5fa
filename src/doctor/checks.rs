//! The audits, each a pure function of what was read. Thresholds are the issue's: Docker's
//! root on the root filesystem with < 20 % headroom, inode headroom < 10 %; the ECS agent's
//! defaults are `ECS_IMAGE_CLEANUP_INTERVAL` 30 m and `ECS_NUM_IMAGES_DELETE_PER_CYCLE` 5.

use super::{AutoScalingFacts, Finding, Inputs};
use crate::asg::{ESCALATE_TAG, ESCALATE_TAG_VALUE};
use crate::docker::ContainerFacts;
use crate::human::bytes;
use crate::sample::FsStats;

/// Free space below this share of a filesystem leaves no room for a burst.
const MIN_HEADROOM_PERCENT: f64 = 20.0;
const MIN_INODE_HEADROOM_PERCENT: f64 = 10.0;

/// Every check, in the order of [`super::IDS`].
pub fn audit(i: &Inputs) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(docker_log_default(i));
    out.extend(etcd_shares_docker_fs(i));
    out.extend(docker_root_on_root_fs(i));
    out.extend(ecs_cleanup(i));
    out.extend(latest_only(i));
    out.extend(containers_without_log_limit(i));
    out.extend(inode_headroom(i));
    out.extend(diskguard_unit(i));
    out
}

/// json-file (Docker's default) with no `max-size` grows each container's log forever.
fn docker_log_default(i: &Inputs) -> Option<Finding> {
    let json = i.daemon_json.as_ref();
    let driver = json
        .and_then(|j| j["log-driver"].as_str())
        .unwrap_or("json-file");
    let max_size = json.and_then(|j| j["log-opts"]["max-size"].as_str());
    (driver == "json-file" && max_size.is_none()).then(|| {
        Finding::new(
            "docker-log-no-max-size",
            format!(
                "Docker's default log driver is json-file with no max-size ({}): every container's log grows until the disk is full",
                if json.is_some() { "daemon.json sets none" } else { "no daemon.json" }
            ),
            format!(
                "put \"log-opts\": {{\"max-size\": \"10m\", \"max-file\": \"3\"}} in {} and restart Docker",
                i.daemon_json_path.display()
            ),
        )
    })
}

fn etcd_shares_docker_fs(i: &Inputs) -> Option<Finding> {
    let (d, e) = (i.docker_root.as_ref()?, i.etcd_dir.as_ref()?);
    (d.stats.device == e.stats.device).then(|| {
        Finding::new(
            "etcd-shares-docker-fs",
            format!(
                "etcd's data dir {} is on the same filesystem as Docker's data root {}: a container that fills the disk takes etcd down",
                e.path.display(),
                d.path.display()
            ),
            "give etcd its own volume (mount one at its data dir, or set ETCD_DATA_DIR to a path on it)".into(),
        )
    })
}

fn headroom(s: &FsStats) -> f64 {
    100.0 - s.used_percent()
}

fn inode_headroom_percent(s: &FsStats) -> f64 {
    100.0 - s.inodes_used_percent()
}

fn docker_root_on_root_fs(i: &Inputs) -> Option<Finding> {
    let (d, root) = (i.docker_root.as_ref()?, i.root_fs.as_ref()?);
    let free = headroom(&d.stats);
    (d.stats.device == root.stats.device && free < MIN_HEADROOM_PERCENT).then(|| {
        Finding::new(
            "docker-root-on-root-fs",
            format!(
                "Docker's data root {} is on the root filesystem with {free:.0}% free: when containers fill it, the host's own services fail too",
                d.path.display()
            ),
            format!(
                "mount a volume of its own at {} (or grow the root filesystem past {MIN_HEADROOM_PERCENT:.0}% free)",
                d.path.display()
            ),
        )
    })
}

fn ecs_cleanup(i: &Inputs) -> Vec<Finding> {
    let Some(env) = &i.ecs_config else {
        return Vec::new();
    };
    let path = i.ecs_config_path.display();
    let is = |key: &str, value: &str| env.get(key).is_some_and(|v| v.eq_ignore_ascii_case(value));
    let mut out = Vec::new();
    if is("ECS_DISABLE_IMAGE_CLEANUP", "true") {
        out.push(Finding::new(
            "ecs-image-cleanup-disabled",
            format!(
                "ECS_DISABLE_IMAGE_CLEANUP=true in {path}: the ECS agent never removes old images"
            ),
            format!("remove ECS_DISABLE_IMAGE_CLEANUP from {path} and restart the ECS agent"),
        ));
    } else {
        let default = |key: &str, value: &str| env.get(key).is_none_or(|v| v == value);
        if default("ECS_IMAGE_CLEANUP_INTERVAL", "30m")
            && default("ECS_NUM_IMAGES_DELETE_PER_CYCLE", "5")
        {
            out.push(Finding::new(
                "ecs-image-cleanup-defaults",
                format!("the ECS agent's image cleanup is at its defaults in {path} (5 images every 30 minutes): a fast deploy or a crash loop pulls faster than that"),
                format!("add ECS_IMAGE_CLEANUP_INTERVAL=10m and ECS_NUM_IMAGES_DELETE_PER_CYCLE=20 to {path} and restart the ECS agent"),
            ));
        }
    }
    if is("ECS_IMAGE_PULL_BEHAVIOR", "prefer-cached") {
        out.push(Finding::new(
            "ecs-prefer-cached",
            format!("ECS_IMAGE_PULL_BEHAVIOR=prefer-cached in {path} turns the ECS agent's image cleanup off"),
            format!("set ECS_IMAGE_PULL_BEHAVIOR=default (or once) in {path} and restart the ECS agent"),
        ));
    }
    out
}

fn only_latest(c: &ContainerFacts) -> bool {
    let tags: Vec<&String> = if c.image_tags.is_empty() {
        vec![&c.image]
    } else {
        c.image_tags.iter().collect()
    };
    let latest = |t: &&String| {
        // `repo:latest`, or a repo with no tag at all (Docker reads it as latest); a
        // registry's port is before the last slash, not a tag.
        let last = t.rsplit('/').next().unwrap_or(t);
        last.ends_with(":latest") || (!last.contains(':') && !last.contains('@'))
    };
    tags.iter().all(latest)
}

fn latest_only(i: &Inputs) -> Option<Finding> {
    let names: Vec<String> = i
        .containers
        .as_ref()?
        .iter()
        .filter(|c| only_latest(c))
        .map(|c| format!("{} ({})", c.name, c.image))
        .collect();
    (!names.is_empty()).then(|| {
        Finding::new(
            "image-latest-only",
            format!(
                "running containers whose image is tagged only latest: {}; each new latest leaves the old image behind, untagged, and what runs is unknown",
                names.join(", ")
            ),
            "deploy images by a version tag or digest (image: repo:1.4.2) in the task definition".into(),
        )
    })
}

/// Running containers whose json log nothing limits, largest log first: a default in
/// daemon.json reaches only containers created after it, so the running ones are named
/// with both fixes. A live log is never truncated (the file belongs to dockerd;
/// docker/cli#6590) — diskguard evicts a container flooding it instead.
fn containers_without_log_limit(i: &Inputs) -> Option<Finding> {
    let mut unlimited: Vec<&ContainerFacts> = i
        .containers
        .as_ref()?
        .iter()
        .filter(|c| c.log_unlimited())
        .collect();
    unlimited.sort_by(|a, b| b.log_bytes.cmp(&a.log_bytes).then(a.name.cmp(&b.name)));
    let names: Vec<String> = unlimited
        .iter()
        .map(|c| {
            let mut s = c.name.clone();
            match (&c.task_family, c.log_bytes) {
                (Some(f), Some(b)) => s += &format!(" (task {f}, log {})", bytes(b)),
                (Some(f), None) => s += &format!(" (task {f})"),
                (None, Some(b)) => s += &format!(" (log {})", bytes(b)),
                (None, None) => {}
            }
            s
        })
        .collect();
    (!names.is_empty()).then(|| {
        Finding::new(
            "container-log-no-limit",
            format!(
                "running containers log to json-file with no size limit: {}",
                names.join(", ")
            ),
            format!(
                "set \"log-opts\": {{\"max-size\": \"10m\", \"max-file\": \"3\"}} in {} (new containers only), and give each task definition's container a logConfiguration with options max-size and max-file (or the awslogs driver); the running ones keep growing until they are replaced",
                i.daemon_json_path.display()
            ),
        )
    })
}

fn inode_headroom(i: &Inputs) -> Vec<Finding> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (what, fs) in [
        ("Docker's data root", &i.docker_root),
        ("etcd's data dir", &i.etcd_dir),
    ] {
        let Some(fs) = fs else { continue };
        if seen.contains(&fs.stats.device) || fs.stats.total_inodes == 0 {
            continue;
        }
        seen.push(fs.stats.device);
        let free = inode_headroom_percent(&fs.stats);
        if free < MIN_INODE_HEADROOM_PERCENT {
            out.push(Finding::new(
                "inode-headroom-low",
                format!(
                    "the filesystem of {what} {} has {free:.1}% of its inodes free: it is full when they run out, however many bytes are free",
                    fs.path.display()
                ),
                format!(
                    "remove small files under {} (`diskguard prune` for Docker's), or make the filesystem again with more inodes (mkfs.ext4 -i 8192)",
                    fs.path.display()
                ),
            ));
        }
    }
    out
}

fn diskguard_unit(i: &Inputs) -> Option<Finding> {
    match &i.unit {
        None => Some(Finding::new(
            "diskguard-unit-missing",
            format!(
                "no {} unit: nothing restarts diskguard, and systemd watches nothing",
                i.unit_name
            ),
            format!(
                "install the unit as /etc/systemd/system/{} (Type=notify, WatchdogSec=30s) and enable it",
                i.unit_name
            ),
        )),
        Some(u) => {
            let off = u
                .watchdog_sec
                .as_deref()
                .is_none_or(|v| matches!(v.trim(), "0" | "infinity" | "off"));
            off.then(|| {
                Finding::new(
                    "diskguard-unit-no-watchdog",
                    format!(
                        "{} has no WatchdogSec=: a hung diskguard is never restarted",
                        u.path.display()
                    ),
                    "add WatchdogSec=30s to its [Service] section and run systemctl daemon-reload"
                        .into(),
                )
            })
        }
    }
}

/// What is worth knowing but is no bad default, in the order of [`super::WARNING_IDS`]:
/// these do not change `doctor`'s exit code.
pub fn warnings(i: &Inputs) -> Vec<Finding> {
    match &i.auto_scaling {
        AutoScalingFacts::NoGroup { instance_id } => vec![Finding::new(
            "not-in-auto-scaling-group",
            format!(
                "escalation unavailable: not in an Auto Scaling group (instance {instance_id}): a drained node whose disk stays full stays in the cluster until someone replaces it"
            ),
            "run the cluster's instances in an Auto Scaling group (packaging/cloudformation/diskguard-node.yaml), so that diskguard can set a node that stays full Unhealthy and the group replaces it".into(),
        )],
        AutoScalingFacts::InGroup { group, .. } if !group.tagged_for_escalation => {
            vec![Finding::new(
                "auto-scaling-group-not-tagged",
                format!(
                    "Auto Scaling group {} has no tag {ESCALATE_TAG}={ESCALATE_TAG_VALUE}: the shipped IAM policy allows autoscaling:SetInstanceHealth only on groups with it, so escalation would be denied",
                    group.name
                ),
                format!(
                    "tag the group {ESCALATE_TAG}={ESCALATE_TAG_VALUE} with PropagateAtLaunch false (aws autoscaling create-or-update-tags), or grant SetInstanceHealth on it in your own policy"
                ),
            )]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
