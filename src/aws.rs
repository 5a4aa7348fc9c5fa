//! The AWS set-up every AWS user shares: the SDK configuration (region, credentials and
//! endpoints from aws-config's standard chain) and the instance metadata service (IMDSv2
//! through aws-config's client).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

/// AWS's error codes for a spent request quota: ECS (JSON protocol) answers
/// `ThrottlingException`, Auto Scaling (query protocol) `Throttling` ("Rate exceeded"), EC2
/// `RequestLimitExceeded`.
const THROTTLING_CODES: &[&str] = &["Throttling", "ThrottlingException", "RequestLimitExceeded"];

fn is_throttling_code(code: Option<&str>) -> bool {
    code.is_some_and(|c| THROTTLING_CODES.contains(&c))
}

/// What a failed SDK call says, for the ECS and Auto Scaling clients' errors: whether the
/// service throttled it (after the SDK's own retries), and its message with the SDK's
/// context.
pub fn call_failure<E>(e: &E) -> (bool, String)
where
    E: aws_sdk_ecs::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    (
        is_throttling_code(e.code()),
        aws_sdk_ecs::error::DisplayErrorContext(e).to_string(),
    )
}

/// IMDS answers on the instance in milliseconds; off EC2 nothing answers at all.
const IMDS_TIMEOUT: Duration = Duration::from_secs(1);

/// Region, credentials and endpoints from aws-config's standard chain (environment,
/// profile, IMDS), so `AWS_ENDPOINT_URL_ECS` points the ECS client at a test server.
///
/// Retries are the SDK's adaptive mode, as ECS asks of callers of a throttled API: jittered
/// exponential backoff on throttling and 5xx, plus a client-side rate limiter (a token
/// bucket that engages after the first throttling error and adapts to the rate that
/// succeeds). It needs aws-smithy-runtime ≥ 1.11.3, where concurrent callers are no longer
/// starved (smithy-rs#4632); Cargo.toml requires that version.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::adaptive().with_max_attempts(4))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .load()
        .await
}

/// An IMDSv2 client, built per lookup so a stale token never outlives a call
/// (`AWS_EC2_METADATA_SERVICE_ENDPOINT` points it elsewhere).
fn imds() -> aws_config::imds::Client {
    aws_config::imds::Client::builder()
        .connect_timeout(IMDS_TIMEOUT)
        .read_timeout(IMDS_TIMEOUT)
        .max_attempts(2)
        .build()
}

/// `AWS_EC2_METADATA_DISABLED=true` turns IMDS off. aws-config honours it in its own
/// region and credential providers only; a client built directly, as here, does not.
fn imds_disabled() -> bool {
    disabled_by(std::env::var("AWS_EC2_METADATA_DISABLED").ok().as_deref())
}

fn disabled_by(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// This EC2 instance's id.
pub async fn instance_id() -> Result<String, String> {
    if imds_disabled() {
        return Err("IMDS is turned off (AWS_EC2_METADATA_DISABLED=true)".into());
    }
    let id = imds()
        .get("/latest/meta-data/instance-id")
        .await
        .map_err(|e| crate::error::chain(&e))?;
    Ok(id.as_ref().trim().to_owned())
}

/// What IMDS says of this instance's place in an Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// `InService`, or not in an Auto Scaling group (IMDS has no such entry), or IMDS
    /// turned off (not on EC2): nothing says the instance is leaving.
    InService,
    /// `Terminated`, `Warmed:*`, `Detached` …: the group is taking it out of service.
    Leaving(String),
}

/// `autoscaling/target-lifecycle-state`. Only IMDS's 404 ("no such entry": not in a
/// group) reads as in service; any other failure is an error, and the caller gives
/// nothing back on it — a failed read must never yield an undrain. The caller retries.
pub async fn target_lifecycle_state() -> Result<Lifecycle, String> {
    use aws_config::imds::client::error::ImdsError;
    if imds_disabled() {
        return Ok(Lifecycle::InService);
    }
    match imds()
        .get("/latest/meta-data/autoscaling/target-lifecycle-state")
        .await
    {
        Ok(state) => Ok(lifecycle_of(state.as_ref())),
        Err(ImdsError::ErrorResponse(r)) if r.response().status().as_u16() == 404 => {
            Ok(Lifecycle::InService)
        }
        Err(e) => Err(format!(
            "IMDS autoscaling/target-lifecycle-state: {}",
            crate::error::chain(&e)
        )),
    }
}

fn lifecycle_of(state: &str) -> Lifecycle {
    match state.trim() {
        "InService" | "" => Lifecycle::InService,
        other => Lifecycle::Leaving(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_throttling_codes_count_as_throttling() {
        assert!(is_throttling_code(Some("Throttling")));
        assert!(is_throttling_code(Some("ThrottlingException")));
        assert!(!is_throttling_code(Some("ValidationError")));
        assert!(!is_throttling_code(Some("ResourceContention")));
        assert!(!is_throttling_code(None));
    }

    #[test]
    fn imds_is_off_only_when_the_variable_says_true() {
        assert!(disabled_by(Some("true")));
        assert!(disabled_by(Some("TRUE ")));
        assert!(!disabled_by(Some("false")));
        assert!(!disabled_by(None));
    }

    #[test]
    fn only_in_service_keeps_an_instance_in_service() {
        assert_eq!(lifecycle_of("InService\n"), Lifecycle::InService);
        assert_eq!(
            lifecycle_of("Terminated"),
            Lifecycle::Leaving("Terminated".into())
        );
        assert_eq!(
            lifecycle_of("Warmed:Stopped"),
            Lifecycle::Leaving("Warmed:Stopped".into())
        );
    }
}
