//! `drain`, `undrain [--force]`, and the ECS part of `status` and `check`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::config::{Settings, Toggle};
use crate::error::chain;
use crate::sample::ecs::{Discovery, ECS_CONFIG_PATH, EcsClient, discover, sdk_config};
use crate::sample::{EcsStatus, EcsView};

/// How long a one-shot command waits for ECS.
const ECS_PATIENCE: Duration = Duration::from_secs(15);

/// Finds this container instance and reads it. `Ok(None)` when ECS is off in the config.
pub async fn connect(settings: &Settings) -> Result<Option<(EcsClient, EcsView)>, String> {
    if settings.ecs.enabled == Toggle::Off {
        return Ok(None);
    }
    let work = async {
        let sdk = tokio::sync::OnceCell::new();
        let identity = match discover(&settings.ecs, ECS_CONFIG_PATH.as_ref(), &sdk).await {
            Discovery::Found(id) => id,
            Discovery::Missing {
                introspection,
                fallback,
            } => {
                return Err(format!(
                    "no ECS container instance found: introspection at {} {introspection}; {fallback}",
                    settings.ecs.introspection_url
                ));
            }
        };
        let client = EcsClient::new(sdk.get_or_init(sdk_config).await, identity);
        let view = client.view().await.map_err(|e| chain(&e))?;
        Ok(Some((client, view)))
    };
    tokio::time::timeout(ECS_PATIENCE, work)
        .await
        .unwrap_or_else(|_| Err(format!("ECS did not answer within {ECS_PATIENCE:?}")))
}

fn describe(view: &EcsView) -> String {
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

/// `drain`: set DRAINING with the ownership mark, unless it already is.
pub async fn drain(settings: &Settings) -> Result<(String, u8), String> {
    let Some((client, view)) = connect(settings).await? else {
        return Err("ECS is off in the configuration (ecs.enabled = false)".into());
    };
    let mut out = String::new();
    match view.status {
        EcsStatus::Draining => {
            let _ = writeln!(out, "already DRAINING: {}", describe(&view));
            return Ok((out, 0));
        }
        EcsStatus::Other(s) => {
            return Err(format!(
                "{} is {s}: only an ACTIVE instance can be drained",
                view.container_instance_arn
            ));
        }
        EcsStatus::Active => {}
    }
    if settings.observe_only() {
        let _ = writeln!(out, "observe mode: would drain {}", describe(&view));
        return Ok((out, 0));
    }
    client
        .drain(SystemTime::now())
        .await
        .map_err(|e| chain(&e))?;
    let after = client.view().await.map_err(|e| chain(&e))?;
    let _ = writeln!(out, "drained: {}", describe(&after));
    Ok((out, 0))
}

/// `undrain`: give back an instance diskguard drained; `force` also one drained by
/// someone else.
pub async fn undrain(settings: &Settings, force: bool) -> Result<(String, u8), String> {
    let Some((client, view)) = connect(settings).await? else {
        return Err("ECS is off in the configuration (ecs.enabled = false)".into());
    };
    let mut out = String::new();
    let ours = view.drained_at.is_some();
    match view.status {
        EcsStatus::Active => {
            if ours && !settings.observe_only() {
                client
                    .remove_mark(view.drained_at.as_deref().unwrap_or_default())
                    .await
                    .map_err(|e| chain(&e))?;
                let _ = writeln!(
                    out,
                    "already ACTIVE; removed diskguard's stale drain mark: {}",
                    view.container_instance_arn
                );
            } else {
                let _ = writeln!(out, "already ACTIVE: {}", describe(&view));
            }
            return Ok((out, 0));
        }
        EcsStatus::Other(s) => {
            return Err(format!(
                "{} is {s}: only a DRAINING instance can be set ACTIVE",
                view.container_instance_arn
            ));
        }
        EcsStatus::Draining if !ours && !force => {
            return Err(format!(
                "{} was set DRAINING by someone else (no {} attribute): leaving it; use --force to override",
                view.container_instance_arn,
                crate::sample::ecs::DRAINED_AT
            ));
        }
        EcsStatus::Draining => {}
    }
    if settings.observe_only() {
        let _ = writeln!(out, "observe mode: would set ACTIVE {}", describe(&view));
        return Ok((out, 0));
    }
    client
        .activate(view.drained_at.as_deref())
        .await
        .map_err(|e| chain(&e))?;
    let after = client.view().await.map_err(|e| chain(&e))?;
    let _ = writeln!(
        out,
        "set ACTIVE{}: {}",
        if ours { "" } else { " (forced)" },
        describe(&after)
    );
    Ok((out, 0))
}
