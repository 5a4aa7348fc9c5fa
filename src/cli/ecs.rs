//! `drain` and `undrain [--force]`: the daemon's drain and give-back, by hand, with the
//! same ownership rules.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::Error;
use crate::config::Settings;
use crate::daemon::oneshot::read_ecs;
use crate::ecs::{DRAINED_AT, EcsClient};
use crate::sample::{EcsStatus, EcsView};

pub fn describe(view: &EcsView) -> String {
    format!(
        "{} in cluster {} is {}{}",
        view.container_instance_arn,
        view.cluster,
        view.status.as_str(),
        if view.drained_at.is_some() {
            " (drained by diskguard)"
        } else {
            ""
        }
    )
}

async fn connect(settings: &Settings) -> Result<(EcsClient, EcsView), Error> {
    read_ecs(settings).await?.ok_or(Error::EcsOff)
}

/// `drain`: set DRAINING with the ownership mark, unless it already is.
pub async fn drain(settings: &Settings) -> Result<String, Error> {
    let (client, view) = connect(settings).await?;
    let mut out = String::new();
    match view.status {
        EcsStatus::Draining => {
            let _ = writeln!(out, "already DRAINING: {}", describe(&view));
            return Ok(out);
        }
        EcsStatus::Other(status) => {
            return Err(Error::WrongState {
                arn: view.container_instance_arn,
                status,
                wanted: "an ACTIVE",
                verb: "drained",
            });
        }
        EcsStatus::Active => {}
    }
    if settings.observe_only() {
        let _ = writeln!(out, "observe mode: would drain {}", describe(&view));
        return Ok(out);
    }
    client.drain(SystemTime::now()).await?;
    let after = client.view(false).await?;
    let _ = writeln!(out, "drained: {}", describe(&after));
    Ok(out)
}

/// `undrain`: give back an instance diskguard drained; `force` also one drained by
/// someone else.
pub async fn undrain(settings: &Settings, force: bool) -> Result<String, Error> {
    let (client, view) = connect(settings).await?;
    let mut out = String::new();
    let ours = view.drained_at.is_some();
    match view.status {
        EcsStatus::Active => {
            if ours && !settings.observe_only() {
                client.delete_attributes(&[DRAINED_AT]).await?;
                let _ = writeln!(
                    out,
                    "already ACTIVE; removed diskguard's stale drain mark: {}",
                    view.container_instance_arn
                );
            } else {
                let _ = writeln!(out, "already ACTIVE: {}", describe(&view));
            }
            return Ok(out);
        }
        EcsStatus::Other(status) => {
            return Err(Error::WrongState {
                arn: view.container_instance_arn,
                status,
                wanted: "a DRAINING",
                verb: "set ACTIVE",
            });
        }
        EcsStatus::Draining if !ours && !force => {
            return Err(Error::DrainedByOthers {
                arn: view.container_instance_arn,
                mark: DRAINED_AT,
            });
        }
        EcsStatus::Draining => {}
    }
    if settings.observe_only() {
        let _ = writeln!(out, "observe mode: would set ACTIVE {}", describe(&view));
        return Ok(out);
    }
    client.activate().await?;
    let after = client.view(false).await?;
    let _ = writeln!(
        out,
        "set ACTIVE{}: {}",
        if ours { "" } else { " (forced)" },
        describe(&after)
    );
    Ok(out)
}
