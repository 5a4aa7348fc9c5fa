//! What every layer's errors share: the exit codes systemd acts on, and the one-line
//! form of an error with its causes.

/// sysexits' EX_CONFIG: the unit's `RestartPreventExitStatus=78` stops a typo from
/// restart-looping.
pub const EXIT_CONFIG: u8 = 78;
/// A fatal error that a restart may cure.
pub const EXIT_FAILURE: u8 = 1;

/// An error and all its causes on one line: `a: b: c`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
