//! Logging: `tracing` is the front end; journald (with structured fields) is the back end
//! when stderr is connected to the journal, a plain stderr formatter otherwise.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// `DISKGUARD_LOG` (then `RUST_LOG`) in EnvFilter syntax; `info` when unset.
fn filter() -> EnvFilter {
    std::env::var("DISKGUARD_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|s| EnvFilter::try_new(s).ok())
        // aws-config warns about every IMDS probe that fails off EC2; its errors still show.
        .unwrap_or_else(|| EnvFilter::new("info,aws_config=error"))
}

/// Installs the global subscriber. Returns where logs go, for the first log line.
pub fn init() -> &'static str {
    if systemd_journal_logger::connected_to_journal() {
        match systemd_journal_logger::JournalLog::new() {
            Ok(journal) => {
                let journal = journal.with_syslog_identifier("diskguard".to_owned());
                let _ = tracing_subscriber::registry()
                    .with(filter())
                    .with(JournalLayer { journal })
                    .try_init();
                return "journald";
            }
            Err(e) => {
                eprintln!("diskguard: cannot open the journal socket ({e}); logging to stderr")
            }
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
    "stderr"
}

/// Hands each tracing event to systemd-journal-logger as a `log` record whose key-values
/// become journal fields (`VOLUME=docker`, `LEVEL_NAME=prune` …), so `journalctl -o
/// verbose` and journal-based alerting can match on them.
struct JournalLayer {
    journal: systemd_journal_logger::JournalLog,
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.pairs.push((field.name().to_owned(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.pairs
                .push((field.name().to_owned(), format!("{value:?}")));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for JournalLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        // The message alone would hide the fields from people reading `journalctl` plainly.
        let mut text = fields.message;
        for (k, v) in &fields.pairs {
            let _ = write!(text, " {k}={v}");
        }
        let meta = event.metadata();
        let level = match *meta.level() {
            tracing::Level::ERROR => log::Level::Error,
            tracing::Level::WARN => log::Level::Warn,
            tracing::Level::INFO => log::Level::Info,
            tracing::Level::DEBUG => log::Level::Debug,
            tracing::Level::TRACE => log::Level::Trace,
        };
        let kvs: Vec<(&str, &str)> = fields
            .pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        log::Log::log(
            &self.journal,
            &log::Record::builder()
                .args(format_args!("{text}"))
                .level(level)
                .target(meta.target())
                .module_path(meta.module_path())
                .file(meta.file())
                .line(meta.line())
                .key_values(&kvs)
                .build(),
        );
    }
}
