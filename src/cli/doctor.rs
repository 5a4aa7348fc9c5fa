//! `diskguard doctor [--json]`: read the host, audit it, print the findings; exit 0 when
//! clean, 1 with findings.

use crate::config::Settings;
use crate::doctor::{Report, audit, read};

/// The text to print and the exit code.
pub async fn doctor(settings: &Settings, json: bool) -> (String, u8) {
    let inputs = read(settings).await;
    let report = Report {
        findings: audit(&inputs),
        not_checked: inputs.not_checked,
    };
    let code = u8::from(!report.findings.is_empty());
    let text = if json {
        serde_json::to_string_pretty(&report).expect("the report is plain data") + "\n"
    } else {
        report.to_text()
    };
    (text, code)
}
