//! What a node's user data holds, whatever its format: the files it writes and the units
//! it installs. Unit text comes from `units/` (compiled in), so the user data, the
//! release tarball and the sysext can never disagree about the unit.

/// The validated inputs of `diskguard userdata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub cluster: String,
    pub release_url: String,
    /// Lower-case hex.
    pub sha256: String,
    /// The `--config` file's text; `None` installs a file that keeps every default.
    pub config: Option<String>,
}

pub const DISKGUARD_SERVICE: &str = include_str!("../../../units/diskguard.service");
pub const INSTALL_SERVICE: &str = include_str!("../../../units/diskguard-install.service");
pub const INSTALL_SCRIPT: &str = include_str!("../../../units/diskguard-install");
pub const INSTALL_DROP_IN: &str =
    include_str!("../../../units/userdata/diskguard.service.d/10-install.conf");
pub const ECS_AGENT_SERVICE: &str = include_str!("../../../units/amazon-ecs-agent.service");

/// Where the ECS agent reads its settings, ECS_CLUSTER among them, on Flatcar and Amazon Linux.
pub const ECS_CONFIG: &str = "/etc/ecs/ecs.config";

/// Where the install unit looks for the tarball that Ignition has already downloaded.
pub const TARBALL_PATH: &str = "/opt/diskguard/diskguard.tar.gz";

/// A file the user data writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: &'static str,
    pub mode: u32,
    pub content: String,
}

/// A systemd unit the user data installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub name: &'static str,
    pub content: &'static str,
    /// Handle `[Install]`, so the unit starts at every boot.
    pub enable: bool,
    /// Start it now (cloud-config's `command: start`; Ignition's first boot starts
    /// enabled units anyway).
    pub start: bool,
    pub drop_ins: Vec<(&'static str, &'static str)>,
}

impl Node {
    /// The files, in the order they are written.
    pub fn files(&self) -> Vec<File> {
        let config = self.config.clone().unwrap_or_else(|| {
            "# diskguard configuration: empty, so every key has its default.\n\
             # `diskguard config defaults` prints them all.\n"
                .to_owned()
        });
        vec![
            File {
                path: ECS_CONFIG,
                mode: 0o644,
                content: format!("ECS_CLUSTER={}\n", self.cluster),
            },
            File {
                path: "/etc/diskguard/diskguard.toml",
                mode: 0o644,
                content: config,
            },
            File {
                path: "/etc/diskguard/release.env",
                mode: 0o644,
                content: format!(
                    "# Read by diskguard-install.service: the release tarball and its sha256.\n\
                     DISKGUARD_RELEASE_URL={}\n\
                     DISKGUARD_RELEASE_SHA256={}\n",
                    self.release_url, self.sha256
                ),
            },
            File {
                path: "/opt/bin/diskguard-install",
                mode: 0o755,
                content: INSTALL_SCRIPT.to_owned(),
            },
        ]
    }

    /// The units, in the order they are started: the ECS agent first, as Flatcar's ECS
    /// guide does (Amazon Linux ships its own `ecs.service`), then diskguard's.
    pub fn units(&self) -> Vec<Unit> {
        let mut units = vec![Unit {
            name: "amazon-ecs-agent.service",
            content: ECS_AGENT_SERVICE,
            enable: true,
            start: true,
            drop_ins: Vec::new(),
        }];
        units.extend(self.diskguard_units());
        units
    }

    /// diskguard's own units, the same on every distribution: the install oneshot, and
    /// diskguard.service with the drop-in that makes it require the install unit.
    pub fn diskguard_units(&self) -> Vec<Unit> {
        vec![
            Unit {
                name: "diskguard-install.service",
                content: INSTALL_SERVICE,
                enable: false,
                start: false,
                drop_ins: Vec::new(),
            },
            Unit {
                name: "diskguard.service",
                content: DISKGUARD_SERVICE,
                enable: true,
                start: true,
                drop_ins: vec![("10-install.conf", INSTALL_DROP_IN)],
            },
        ]
    }
}
