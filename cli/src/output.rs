//! How results reach people and scripts: human lines on stdout (none with
//! `-q`), or exactly one JSON document with `--json`; progress bars on
//! stderr only when it is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde::ser::SerializeMap;
use sysgen_generations::Progress;

pub struct Out {
    pub json: bool,
    pub quiet: bool,
    pub verbose: bool,
}

impl Out {
    /// A line for people.
    pub fn line(&self, s: impl AsRef<str>) {
        if !self.json && !self.quiet {
            println!("{}", s.as_ref());
        }
    }

    /// A line only `-v` shows.
    pub fn detail(&self, s: impl AsRef<str>) {
        if self.verbose {
            self.line(s);
        }
    }

    /// The one JSON document of a command, written as it is serialized (a
    /// first switch's lists a step per file; its whole text is not kept).
    /// A document that cannot be written fails the command.
    pub fn doc(&self, v: impl Serialize) -> Result<(), sysgen_generations::Error> {
        if !self.json {
            return Ok(());
        }
        let mut w = std::io::BufWriter::new(std::io::stdout().lock());
        serde_json::to_writer_pretty(&mut w, &v)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(w))
            .and_then(|()| w.flush())
            .map_err(|source| sysgen_generations::Error::Io {
                path: "standard output".into(),
                source,
            })
    }

    pub fn progress(&self) -> Bar {
        Bar {
            enabled: !self.json && !self.quiet && std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }
}

/// A JSON object (`rest`) with one more field, `key`, serialized in its
/// place among the others (serde_json keeps an object's keys sorted) while it
/// is printed, so that `value` is never held as a whole JSON value.
pub struct WithField<'a, T> {
    pub rest: serde_json::Map<String, serde_json::Value>,
    pub key: &'a str,
    pub value: T,
}

impl<T: Serialize> Serialize for WithField<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.rest.len() + 1))?;
        let mut pending = true;
        for (k, v) in &self.rest {
            if pending && k.as_str() > self.key {
                m.serialize_entry(self.key, &self.value)?;
                pending = false;
            }
            m.serialize_entry(k, v)?;
        }
        if pending {
            m.serialize_entry(self.key, &self.value)?;
        }
        m.end()
    }
}

/// A progress bar on a terminal; silent when stderr is piped.
pub struct Bar {
    enabled: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        // Small jobs finish before a bar would help.
        if !self.enabled || total < 2000 {
            return;
        }
        let pb = ProgressBar::new(total);
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {elapsed}")
        {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(what.to_owned());
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(pb);
    }

    fn advance(&self, n: u64) {
        if let Some(pb) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            pb.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(pb) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            pb.finish_and_clear();
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time, without a calendar crate.
pub fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_704_067_200), "2024-01-01 00:00:00");
        assert_eq!(super::utc(1_709_164_800 + 3661), "2024-02-29 01:01:01");
    }
}
