//! How results reach people and scripts: human lines on stdout (none with
//! `-q`), or exactly one JSON document with `--json`; progress bars on
//! stderr only when it is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sysgen_generations::Progress;
use sysgen_generations::datasets::DatasetReport;

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

/// "generation 3" or "generations 1, 2, 3".
pub fn generation_list(numbers: &[u64]) -> String {
    format!(
        "generation{} {}",
        if numbers.len() == 1 { "" } else { "s" },
        numbers
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// One line per dataset sysgen knows, then one per snapshot of it.
pub fn dataset_lines(out: &Out, datasets: &[DatasetReport]) {
    for d in datasets {
        let gens = if d.generations.is_empty() {
            "no remaining generation has it".to_owned()
        } else {
            format!("in {}", generation_list(&d.generations))
        };
        out.line(format!(
            "dataset {} ({}): {} at {}, {gens}, {} snapshot{}",
            d.path,
            d.kind,
            d.state,
            d.location,
            d.snapshots.len(),
            if d.snapshots.len() == 1 { "" } else { "s" }
        ));
        for s in &d.snapshots {
            out.line(format!(
                "  snapshot {} ({}, generation {}, {}): {}",
                s.name,
                s.why,
                s.generation,
                utc(s.taken_at),
                s.location
            ));
        }
    }
}

/// `512 B`, `21.3 KiB`, `1.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_704_067_200), "2024-01-01 00:00:00");
        assert_eq!(super::utc(1_709_164_800 + 3661), "2024-02-29 01:01:01");
    }

    #[test]
    fn sizes_and_lists() {
        assert_eq!(super::human_bytes(21), "21 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::generation_list(&[2]), "generation 2");
        assert_eq!(super::generation_list(&[1, 2]), "generations 1, 2");
    }
}
