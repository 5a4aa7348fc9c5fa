//! `diskguard doctor [--json]`: read the host, audit it, print the findings and warnings;
//! exit 0 when clean, 1 with findings (warnings do not count).

use crate::config::Settings;

/// The text to print and the exit code.
pub async fn doctor(settings: &Settings, json: bool) -> (String, u8) {
    crate::doctor::run(settings, json).await
}
