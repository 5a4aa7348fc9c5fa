//! Numbers for people: `2.1 GiB`, `4m 30s`.

use std::time::Duration;

/// Bytes in binary units: `2.1 GiB`.
pub fn bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// A duration to the second: `4m 30s`.
pub fn duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_durations_read_as_people_write_them() {
        assert_eq!(bytes(2_254_857_830), "2.1 GiB");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(duration(Duration::from_millis(270_900)), "4m 30s");
    }
}
