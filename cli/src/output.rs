//! How results reach people and scripts: human lines on stdout (none with
//! `-q`), or exactly one JSON document with `--json`; progress bars on
//! stderr only when it is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
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

pub use sysgen_generations::text::{generation_list, human_bytes, utc};
