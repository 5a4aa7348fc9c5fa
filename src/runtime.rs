//! Where diskguard runs: under systemd on the host (the user-data and sysext installs), or
//! in a container — as an ECS daemon service, whose task has no sd_notify socket and no
//! watchdog; the task's restart and ECS's own health keep it running instead.

use serde::Serialize;

/// How this process was started, as `status` and the first log lines say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunsAs {
    /// On the host (systemd, or by hand).
    Host,
    /// In a container that is not an ECS task.
    Container,
    /// In an ECS task (the daemon service): the ECS agent sets the task metadata
    /// endpoint in every task container's environment.
    EcsTask,
}

/// The ECS agent sets this in every container of a task (ECS developer guide, "Task
/// metadata endpoint version 4").
const ECS_METADATA_ENV: &str = "ECS_CONTAINER_METADATA_URI_V4";

impl RunsAs {
    pub fn detect() -> RunsAs {
        Self::from_facts(
            std::env::var_os(ECS_METADATA_ENV).is_some_and(|v| !v.is_empty()),
            std::path::Path::new("/.dockerenv").exists(),
        )
    }

    fn from_facts(ecs_metadata: bool, dockerenv: bool) -> RunsAs {
        match (ecs_metadata, dockerenv) {
            (true, _) => RunsAs::EcsTask,
            (false, true) => RunsAs::Container,
            (false, false) => RunsAs::Host,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            RunsAs::Host => "on the host",
            RunsAs::Container => "in a container",
            RunsAs::EcsTask => "as an ECS task (daemon service)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ecs_metadata_endpoint_says_ecs_task_and_dockerenv_container() {
        assert_eq!(RunsAs::from_facts(true, true), RunsAs::EcsTask);
        assert_eq!(RunsAs::from_facts(true, false), RunsAs::EcsTask);
        assert_eq!(RunsAs::from_facts(false, true), RunsAs::Container);
        assert_eq!(RunsAs::from_facts(false, false), RunsAs::Host);
    }
}
