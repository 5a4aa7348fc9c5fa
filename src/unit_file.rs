//! systemd unit files as systemd merges them: the unit from the first directory that has
//! it, then its drop-ins (`NAME.d/*.conf`) from every directory in file-name order. Used to
//! find etcd's data dir in its unit and by `doctor` to read diskguard's own unit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A unit with its drop-ins applied, as `(section, key, value)` in the order systemd
/// reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The unit file itself.
    pub path: PathBuf,
    /// The drop-ins applied after it.
    pub drop_ins: Vec<PathBuf>,
    entries: Vec<(String, String, String)>,
}

/// Why a unit could not be read (one that does not exist is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}")]
pub struct UnitError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn read(path: &Path) -> Result<String, UnitError> {
    std::fs::read_to_string(path).map_err(|source| UnitError {
        path: path.to_owned(),
        source,
    })
}

/// Finds `name` in `dirs` (earlier directories win, as /etc wins over /usr/lib).
pub fn read_unit(dirs: &[PathBuf], name: &str) -> Result<Option<Unit>, UnitError> {
    let Some(path) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) else {
        return Ok(None);
    };
    let mut entries = parse(&read(&path)?);
    // Same drop-in name in two directories: the earlier directory's wins.
    let mut drop_ins: BTreeMap<std::ffi::OsString, PathBuf> = BTreeMap::new();
    for dir in dirs.iter().rev() {
        let Ok(list) = std::fs::read_dir(dir.join(format!("{name}.d"))) else {
            continue;
        };
        for entry in list.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "conf") {
                drop_ins.insert(entry.file_name(), p);
            }
        }
    }
    for p in drop_ins.values() {
        entries.extend(parse(&read(p)?));
    }
    Ok(Some(Unit {
        path,
        drop_ins: drop_ins.into_values().collect(),
        entries,
    }))
}

/// `(section, key, value)` for every assignment; comments, blank lines and line
/// continuations handled as systemd does.
pub fn parse(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        let full = full.trim();
        if let Some(name) = full.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, value)) = full.split_once('=') {
            out.push((
                section.clone(),
                key.trim().to_owned(),
                value.trim().to_owned(),
            ));
        }
    }
    out
}

/// Splits an `Environment=` value into words: double or single quotes group.
fn words(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in value.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(word);
    }
    out
}

impl Unit {
    /// The last value of `key` in `section` (a later drop-in overrides), if set and not
    /// reset to empty.
    pub fn last(&self, section: &str, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The `[Service]` environment: every `Environment=` in order, an empty one resetting.
    pub fn environment(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for (_, _, value) in self
            .entries
            .iter()
            .filter(|(s, k, _)| s == "Service" && k == "Environment")
        {
            if value.is_empty() {
                env.clear();
                continue;
            }
            for word in words(value) {
                if let Some((k, v)) = word.split_once('=') {
                    env.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_words_with_quotes_and_resets() {
        let text = "[Unit]\nDescription=etcd\n[Service]\nEnvironment=A=1\nEnvironment=\"ETCD_DATA_DIR=/var/lib/etcd\" 'B=x y'\n# Environment=C=3\n";
        let unit = Unit {
            path: PathBuf::from("/u"),
            drop_ins: Vec::new(),
            entries: parse(text),
        };
        let env = unit.environment();
        assert_eq!(env["ETCD_DATA_DIR"], "/var/lib/etcd");
        assert_eq!(env["B"], "x y");
        assert_eq!(env["A"], "1");
        assert!(!env.contains_key("C"));
        let reset = Unit {
            entries: parse("[Service]\nEnvironment=A=1\nEnvironment=\nEnvironment=D=4\n"),
            ..unit
        };
        assert_eq!(
            reset.environment().into_iter().collect::<Vec<_>>(),
            vec![("D".to_owned(), "4".to_owned())]
        );
    }

    #[test]
    fn drop_ins_override_in_name_order_and_etc_wins() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (etc, lib) = (tmp.path().join("etc"), tmp.path().join("lib"));
        for d in [&etc, &lib] {
            std::fs::create_dir_all(d.join("etcd-member.service.d")).expect("mkdir");
        }
        std::fs::write(
            lib.join("etcd-member.service"),
            "[Service]\nEnvironment=ETCD_DATA_DIR=/var/lib/etcd\nWatchdogSec=10\n",
        )
        .expect("write");
        std::fs::write(
            lib.join("etcd-member.service.d/20-data.conf"),
            "[Service]\nEnvironment=ETCD_DATA_DIR=/from-lib\n",
        )
        .expect("write");
        std::fs::write(
            etc.join("etcd-member.service.d/20-data.conf"),
            "[Service]\nEnvironment=ETCD_DATA_DIR=/from-etc\n",
        )
        .expect("write");
        std::fs::write(
            etc.join("etcd-member.service.d/10-first.conf"),
            "[Service]\nEnvironment=ETCD_DATA_DIR=/first\nWatchdogSec=\n",
        )
        .expect("write");
        let unit = read_unit(&[etc, lib], "etcd-member.service")
            .expect("reads")
            .expect("found");
        assert_eq!(unit.environment()["ETCD_DATA_DIR"], "/from-etc");
        assert_eq!(
            unit.last("Service", "WatchdogSec"),
            None,
            "reset by a drop-in"
        );
        assert_eq!(unit.drop_ins.len(), 2);
    }
}
