//! Amazon Linux 2023's user data path, applied by the real cloud-init: Debian's cloud-init in
//! the [`Recipe::CloudInit`](crate::systemd::image::Recipe) image reads a NoCloud seed
//! (`meta-data` + `user-data`) bound at `/var/lib/cloud/seed/nocloud` before PID 1 starts,
//! so its generator enables it and its four boot stages run as on an instance's first boot.

use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::processes::peer::temp_dir;
use crate::systemd::container::{Bind, SystemdContainer};
use crate::systemd::node::{TEST_DROP_IN, World};

/// Where cloud-init's NoCloud datasource looks for a seed on the root filesystem.
pub const SEED_DIR: &str = "/var/lib/cloud/seed/nocloud";
/// cloud-init's four stages on two shared cores (measured ~15 s), with room.
const CLOUD_INIT_TIMEOUT: Duration = Duration::from_secs(120);

/// A seed directory holding `user_data` and a `meta-data` with a fresh instance id.
pub fn seed(user_data: &str) -> TempDir {
    let dir = temp_dir("nocloud");
    let instance_id = dir.path().file_name().map_or_else(
        || "iid-diskguard".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    std::fs::write(
        dir.path().join("meta-data"),
        format!("instance-id: {instance_id}\n"),
    )
    .expect("writing meta-data");
    std::fs::write(dir.path().join("user-data"), user_data).expect("writing user-data");
    dir
}

/// What `cloud-init status --long` said once cloud-init finished, and whether it reported
/// no error.
#[derive(Debug)]
pub struct Finished {
    pub ok: bool,
    pub status: String,
}

/// The ordering of Amazon Linux's `ecs.service` (amazon-ecs-init's unit: `After=
/// cloud-final.service`, enabled in multi-user.target), without the agent, which needs Docker
/// and AWS. It makes the boot's job queue what it is on an instance, so that user data which
/// waited for diskguard.service from `runcmd` would hang this boot as it would hang a node's.
pub const ECS_SERVICE_ORDERING: &str = "\
# Test stand-in: Amazon Linux's ecs.service ordering, not its agent.
[Unit]
Description=Amazon Elastic Container Service - container agent (ordering stand-in)
After=cloud-final.service

[Service]
Type=simple
ExecStart=/bin/sleep infinity
";
const ECS_WANTED: &str = "[Unit]\nWants=ecs.service\n";

/// `cloud-final.service` as Amazon Linux renders cloud-init's template. The template orders
/// the final stage `After=multi-user.target` only for the `ubuntu`, `debian` and `unknown`
/// variants (canonical/cloud-init `systemd/cloud-final.service.tmpl`), and Debian's unit in
/// the image has it. With `ecs.service` (`After=cloud-final.service`) wanted by
/// multi-user.target, Debian's unit makes an ordering cycle that Amazon Linux does not have,
/// and systemd breaks it by deleting one of the cycle's start jobs, at times cloud-final's:
/// then the user data's `runcmd` never runs.
pub const CLOUD_FINAL_AMAZON: &str = "\
# Test stand-in: cloud-init's template as Amazon Linux renders it (no After=multi-user.target).
[Unit]
Description=Execute cloud user/final scripts
After=network-online.target cloud-config.service rc-local.service
Wants=network-online.target cloud-config.service
Before=apt-daily.service

[Service]
Type=oneshot
ExecStart=/usr/bin/cloud-init modules --mode=final
RemainAfterExit=yes
TimeoutSec=0
KillMode=process
StandardOutput=journal+console

[Install]
WantedBy=cloud-init.target
";

/// Boots `world`'s cloud-init image with `user_data` as its seed, the `ecs.service`
/// ordering stand-in enabled and Amazon Linux's `cloud-final.service`; returns the
/// container and the seed, which must outlive it. Panics if the boot's units order
/// themselves in a cycle (systemd would drop one of its jobs, whichever it picks).
pub fn boot_with_user_data<'w>(
    world: &'w World,
    user_data: &str,
) -> (SystemdContainer<'w>, TempDir) {
    let seed = seed(user_data);
    let units = temp_dir("ecs-unit");
    let ecs = units.path().join("ecs.service");
    let wants = units.path().join("ecs.conf");
    std::fs::write(&ecs, ECS_SERVICE_ORDERING).expect("writing ecs.service");
    std::fs::write(&wants, ECS_WANTED).expect("writing the multi-user.target drop-in");
    let cloud_final = units.path().join("cloud-final.service");
    std::fs::write(&cloud_final, CLOUD_FINAL_AMAZON).expect("writing cloud-final.service");
    // cloud-init starts diskguard during the boot, before `World::boot_with` writes the test
    // drop-in: it must be there from PID 1 on, so that diskguard never probes IMDS.
    let test_drop_in = units.path().join("50-test.conf");
    std::fs::write(&test_drop_in, TEST_DROP_IN).expect("writing the test drop-in");
    let c = world.boot_with(&[
        Bind {
            host: seed.path(),
            container: SEED_DIR,
            read_only: true,
        },
        Bind {
            host: &ecs,
            container: "/etc/systemd/system/ecs.service",
            read_only: true,
        },
        Bind {
            host: &wants,
            container: "/etc/systemd/system/multi-user.target.d/50-ecs.conf",
            read_only: true,
        },
        Bind {
            host: &cloud_final,
            container: "/etc/systemd/system/cloud-final.service",
            read_only: true,
        },
        // Writable: `World::boot_with` writes the same text there again after the boot.
        Bind {
            host: &test_drop_in,
            container: "/etc/systemd/system/diskguard.service.d/50-test.conf",
            read_only: false,
        },
    ]);
    // Bound files are read when the container starts: the directory may go.
    drop(units);
    let (_, said) = c.verify(&["multi-user.target", "cloud-init.target"]);
    assert!(
        !said.contains("ordering cycle"),
        "the boot's units in {} order themselves in a cycle:\n{said}",
        c.name
    );
    (c, seed)
}

/// Waits until cloud-init has run all its stages (`cloud-init status --wait`: before that,
/// a stage's error already reads as `status: error` while later stages still run).
pub fn wait_finished(c: &SystemdContainer<'_>) -> Finished {
    let started = Instant::now();
    let limit = CLOUD_INIT_TIMEOUT.as_secs().to_string();
    let out = c.exec(&[
        "timeout",
        &limit,
        "cloud-init",
        "status",
        "--wait",
        "--long",
    ]);
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.code() == Some(124) {
        panic!(
            "cloud-init in {} did not finish in {CLOUD_INIT_TIMEOUT:?}:\n{}",
            c.name,
            stuck_boot(c)
        );
    }
    let word = status
        .lines()
        .find_map(|l| l.strip_prefix("status:"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    eprintln!(
        "cloud-init finished ({word}) {:?} after boot",
        started.elapsed()
    );
    Finished {
        ok: word == "done" && out.status.success(),
        status,
    }
}

/// What a boot whose cloud-init has not finished is waiting for: cloud-init's own account
/// of its stages, systemd's job queue (a stage that has not started waits there), the
/// cloud-init units, and the end of the boot's journal and of cloud-init's log.
fn stuck_boot(c: &SystemdContainer<'_>) -> String {
    let show = |args: &[&str]| {
        let out = c.exec(args);
        format!(
            "$ {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    [
        show(&["cloud-init", "status", "--long"]),
        show(&["systemctl", "list-jobs", "--no-pager"]),
        show(&[
            "systemctl",
            "list-units",
            "--all",
            "--no-pager",
            "cloud-*",
            "network*",
            "systemd-networkd*",
        ]),
        show(&[
            "journalctl",
            "-b",
            "--no-pager",
            "-o",
            "short-monotonic",
            "-n",
            "120",
        ]),
        show(&["tail", "-n", "60", "/var/log/cloud-init.log"]),
    ]
    .join("\n")
}
