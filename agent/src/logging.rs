//! Logging through the `log` facade: to the systemd journal when its socket exists, else to
//! stderr. Nothing logged may carry a password, token or secret.

use std::io::Write;

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let _ = writeln!(std::io::stderr().lock(), "{:<5} {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

/// Installs the logger once; later calls do nothing.
pub fn init(level: log::LevelFilter) {
    let journal = std::path::Path::new("/run/systemd/journal/socket")
        .exists()
        .then(systemd_journal_logger::JournalLog::new)
        .and_then(Result::ok);
    let installed = match journal {
        Some(j) => log::set_boxed_logger(Box::new(j.with_syslog_identifier("cairn".into()))),
        None => log::set_logger(&Stderr),
    };
    if installed.is_ok() {
        log::set_max_level(level);
    }
}
