//! A container on a private [`Dockerd`] with a real systemd as PID 1, as the install tests
//! need it (the recipe seen working on this machine's Engine 20.10 and cgroup v1 host):
//! host network (so it reaches the tests' loopback servers), SIGRTMIN+3 to stop, its own
//! tmpfs /sys/fs/cgroup with the host's `systemd` and `unified` hierarchies bound in (binding
//! all of /sys/fs/cgroup would let it remount the host's; without `unified`, `systemctl
//! stop` hangs 90 s), tmpfs /run and /run/lock, and CAP_SYS_ADMIN so that the units'
//! sandboxing directives take effect. `--privileged` fails here.
//!
//! After boot the container's root is made recursively shared, as systemd makes a host's
//! root at boot (in a container it leaves it "private,slave"): mounts made in a unit's or
//! systemd-sysext's namespace then propagate back as they would on a node. The root stays a
//! slave of the host's, so nothing propagates to the host.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::docker::dockerd::Dockerd;
use crate::processes::peer::run_ok;
use crate::processes::procs::{describe, run_raw};

const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct SystemdContainer<'d> {
    dockerd: &'d Dockerd,
    pub name: String,
}

/// A bind mount: host path, container path, read-only.
#[derive(Debug, Clone)]
pub struct Bind<'a> {
    pub host: &'a Path,
    pub container: &'a str,
    pub read_only: bool,
}

impl<'d> SystemdContainer<'d> {
    /// Starts `image` with systemd as PID 1 and waits until `systemctl is-system-running`
    /// says running or degraded.
    pub fn boot(dockerd: &'d Dockerd, image: &str, binds: &[Bind<'_>]) -> Self {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "diskguard-sd-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "--stop-signal",
            "SIGRTMIN+3",
            "--cap-add",
            "SYS_ADMIN",
            "--tmpfs",
            "/sys/fs/cgroup",
            "-v",
            "/sys/fs/cgroup/systemd:/sys/fs/cgroup/systemd:rw",
            "-v",
            "/sys/fs/cgroup/unified:/sys/fs/cgroup/unified:rw",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for bind in binds {
            args.push("-v".into());
            args.push(format!(
                "{}:{}:{}",
                bind.host.display(),
                bind.container,
                if bind.read_only { "ro" } else { "rw" }
            ));
        }
        args.push(image.to_owned());
        args.push("/lib/systemd/systemd".to_owned());
        run_ok(dockerd.docker().args(&args));
        let container = SystemdContainer { dockerd, name };
        let started = Instant::now();
        loop {
            let state = container.exec(&["systemctl", "is-system-running"]);
            let word = String::from_utf8_lossy(&state.stdout).trim().to_owned();
            if word == "running" || word == "degraded" {
                break;
            }
            if started.elapsed() > BOOT_TIMEOUT {
                panic!(
                    "systemd in {} did not finish booting in {BOOT_TIMEOUT:?} (state {word:?}); failed units:\n{}",
                    container.name,
                    container.stdout(&["systemctl", "--failed", "--no-pager"])
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        container.stdout(&["mount", "--make-rshared", "/"]);
        container
    }

    fn docker_exec(&self, interactive: bool, args: &[&str]) -> Command {
        let mut cmd = self.dockerd.docker();
        cmd.arg("exec");
        if interactive {
            cmd.arg("-i");
        }
        cmd.arg(&self.name).args(args);
        cmd
    }

    /// Runs a command in the container; any exit status.
    pub fn exec(&self, args: &[&str]) -> Output {
        run_raw(&mut self.docker_exec(false, args))
    }

    /// Runs a command that must succeed; its trimmed stdout.
    pub fn stdout(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "in {}: {args:?} failed ({}):\n{}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `sh -c script` with `input` on stdin; any exit status.
    pub fn sh_with_input(&self, script: &str, input: &[u8]) -> Output {
        let mut cmd = self.docker_exec(true, &["sh", "-c", script]);
        let what = describe(&cmd);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        child
            .stdin
            .take()
            .expect("stdin was piped")
            .write_all(input)
            .unwrap_or_else(|e| panic!("writing stdin of {what}: {e}"));
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
    }

    /// Writes `content` to `path` in the container with `mode`, owned by root, creating
    /// parent directories (0755).
    pub fn write_file(&self, path: &str, content: &[u8], mode: u32) {
        let script = format!(
            "set -e; mkdir -p \"$(dirname '{path}')\"; cat > '{path}'; chmod {mode:o} '{path}'"
        );
        let out = self.sh_with_input(&script, content);
        assert!(
            out.status.success(),
            "writing {path} in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `systemctl show UNIT -p P1 -p P2 …` as a map.
    pub fn show(&self, unit: &str, properties: &[&str]) -> HashMap<String, String> {
        let mut args = vec!["systemctl", "show", unit];
        for p in properties {
            args.push("-p");
            args.push(p);
        }
        self.stdout(&args)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// One property of a unit.
    pub fn property(&self, unit: &str, property: &str) -> String {
        self.show(unit, &[property])
            .remove(property)
            .unwrap_or_default()
    }

    /// `systemd-analyze verify` in the container for `units` (unit names or paths): whether
    /// it succeeded, and what it printed.
    pub fn verify(&self, units: &[&str]) -> (bool, String) {
        let mut args = vec!["systemd-analyze", "verify", "--man=no"];
        args.extend_from_slice(units);
        let out = self.exec(&args);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    }

    /// `systemd-analyze verify` in the container must print nothing for `units` (unit
    /// names or paths): a warning is a failure too.
    pub fn assert_verify_clean(&self, units: &[&str]) {
        let (ok, said) = self.verify(units);
        assert!(
            ok && said.trim().is_empty(),
            "systemd-analyze verify {units:?} in {}: {said}",
            self.name
        );
    }

    /// The unit's journal, plain text, for assertion messages.
    pub fn journal(&self, unit: &str) -> String {
        String::from_utf8_lossy(
            &self
                .exec(&[
                    "journalctl",
                    "-u",
                    unit,
                    "--no-pager",
                    "-o",
                    "short-monotonic",
                ])
                .stdout,
        )
        .into_owned()
    }

    /// Polls the unit until `pred` holds for its properties, or panics with its journal.
    pub fn wait_for(
        &self,
        unit: &str,
        properties: &[&str],
        timeout: Duration,
        what: &str,
        pred: impl Fn(&HashMap<String, String>) -> bool,
    ) -> HashMap<String, String> {
        let started = Instant::now();
        loop {
            let props = self.show(unit, properties);
            if pred(&props) {
                return props;
            }
            if started.elapsed() > timeout {
                panic!(
                    "{unit}: timed out after {timeout:?} waiting until {what}; last {props:?}\njournal:\n{}",
                    self.journal(unit)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for SystemdContainer<'_> {
    fn drop(&mut self) {
        // SIGKILL is fine: nothing in the container needs a clean stop, and the dockerd
        // guard removes everything else.
        let _ = run_raw(self.dockerd.docker().args(["rm", "--force", &self.name]));
    }
}
