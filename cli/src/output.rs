//! How results reach people and scripts: human lines on stdout (none with
//! `-q`), or exactly one JSON document with `--json`; progress bars on
//! stderr only when it is a terminal. Colour goes through `anstream`, which
//! strips it when the stream is not a terminal, under `NO_COLOR`, or with
//! `--color never`.

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use anstream::ColorChoice;
use anstyle::{AnsiColor, Style};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::Progress;
use sysgen_generations::error::GenerationError;

use crate::render::{Names, plan_line};

pub struct Out {
    pub json: bool,
    pub quiet: bool,
    pub verbose: bool,
}

impl Out {
    /// Whether [`Out::line`] shows anything: what only makes lines can be
    /// skipped when not.
    pub fn shows_lines(&self) -> bool {
        !self.json && !self.quiet
    }

    /// A line for people.
    pub fn line(&self, s: impl AsRef<str>) {
        if self.shows_lines() {
            anstream::println!("{}", s.as_ref());
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
    pub fn doc(&self, v: impl Serialize) -> Result<(), Error> {
        if !self.json {
            return Ok(());
        }
        let mut w = std::io::BufWriter::new(std::io::stdout().lock());
        serde_json::to_writer_pretty(&mut w, &v)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(w))
            .and_then(|()| w.flush())
            .map_err(|source| Error::Io {
                path: "standard output".into(),
                source,
            })
    }

    pub fn progress(&self) -> Bar {
        Bar {
            enabled: !self.json && !self.quiet && std::io::stderr().is_terminal(),
            steps: self.verbose && !self.json && !self.quiet,
            bar: Mutex::new(None),
            small: Mutex::new(None),
            names: Mutex::new(None),
        }
    }
}

/// `--color`: when output is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum When {
    /// On a terminal, unless `NO_COLOR` is set
    Auto,
    Always,
    Never,
}

impl When {
    /// Sets the choice for every stream of the process.
    pub fn apply(self) {
        match self {
            When::Auto => ColorChoice::Auto,
            When::Always => ColorChoice::Always,
            When::Never => ColorChoice::Never,
        }
        .write_global();
    }
}

pub const ADDED: Style = AnsiColor::Green.on_default();
pub const REMOVED: Style = AnsiColor::Red.on_default();
pub const CHANGED: Style = AnsiColor::Yellow.on_default();
pub const BOLD: Style = Style::new().bold();
pub const DIM: Style = Style::new().dimmed();

/// `s` in `style` (the escapes are dropped on the way out when colour is off).
pub fn paint(style: Style, s: impl Display) -> String {
    format!("{style}{s}{style:#}")
}

/// A line that starts with a `+`, `-` or `~` marker, in the marker's colour.
pub fn marked(line: &str) -> String {
    let style = match line.as_bytes() {
        [b'+', b' ', ..] => ADDED,
        [b'-', b' ', ..] => REMOVED,
        [b'~', b' ', ..] => CHANGED,
        _ => return line.to_owned(),
    };
    paint(style, line)
}

/// The exit status of a failed command: 2 for input that is wrong,
/// including a generation that does not exist, whether it never did or gc
/// deleted it; 1 for the rest.
pub fn exit_code(e: &Error) -> i32 {
    if e.is_invalid_input() || matches!(e, Error::Generation(GenerationError::Collected(_))) {
        2
    } else {
        1
    }
}

/// A progress bar on a terminal; silent when stderr is piped. Under `-v`
/// it also prints each step of a switch as it runs.
pub struct Bar {
    enabled: bool,
    steps: bool,
    bar: Mutex<Option<ProgressBar>>,
    /// A job too small for a bar so far: what, how many, how many done. A
    /// build learns its number of files as it goes ([`Progress::grow`]).
    small: Mutex<Option<(String, u64, u64)>>,
    /// The root's user and group names, for the steps it prints.
    names: Mutex<Option<Names>>,
}

impl Bar {
    /// Draws the bar of the job started, once it is large enough: small
    /// jobs finish before a bar would help.
    fn show(&self) {
        let mut small = self.small.lock().unwrap_or_else(|e| e.into_inner());
        let Some((what, total, done)) = small.take_if(|(_, total, _)| *total >= 2000) else {
            return;
        };
        drop(small);
        let pb = ProgressBar::new(total);
        pb.set_position(done);
        let colour = anstream::AutoStream::choice(&std::io::stderr()) != ColorChoice::Never;
        let bar = if colour {
            "{bar:30.cyan/blue}"
        } else {
            "{bar:30}"
        };
        let template =
            format!("{{msg:>12}} [{bar}] {{pos}}/{{len}} {{per_sec}} {{elapsed}}, ETA {{eta}}");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(what);
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(pb);
    }

    /// Names owners in the steps it prints (once the root is open).
    pub fn set_names(&self, names: Names) {
        *self.names.lock().unwrap_or_else(|e| e.into_inner()) = Some(names);
    }
}

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        if !self.enabled {
            return;
        }
        *self.small.lock().unwrap_or_else(|e| e.into_inner()) = Some((what.to_owned(), total, 0));
        self.show();
    }

    fn advance(&self, n: u64) {
        if let Some(pb) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            pb.inc(n);
        } else if let Some((_, _, done)) = self
            .small
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            *done += n;
        }
    }

    fn grow(&self, n: u64) {
        if let Some(pb) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            pb.inc_length(n);
            return;
        }
        if let Some((_, total, _)) = self
            .small
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            *total += n;
        }
        self.show();
    }

    fn finish(&self) {
        self.small.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(pb) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            pb.finish_and_clear();
        }
    }

    fn step(&self, line: &str) {
        if !self.steps {
            return;
        }
        let line = match self
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            Some(names) => plan_line(line, names, true),
            None => line.to_owned(),
        };
        let line = format!("  {}", step_line(&line));
        match self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            // Above the bar, which is drawn again below it.
            Some(pb) => pb.suspend(|| anstream::println!("{line}")),
            None => anstream::println!("{line}"),
        }
    }
}

/// Under `-v`: the output of the tools a step runs (apt's progress),
/// indented under the step, dimmed.
pub fn tool_output() -> sysgen_generations::host::ToolOutput {
    sysgen_generations::host::ToolOutput(std::sync::Arc::new(|l: &str| {
        anstream::println!("    {}", paint(DIM, l));
    }))
}

/// A plan line, its verb coloured as a marker would be.
pub fn step_line(line: &str) -> String {
    let verb = line.split(' ').next().unwrap_or_default();
    let style = match verb {
        "create" | "write" | "install" | "enable" | "start" | "attach" | "snapshot" => ADDED,
        "remove" | "delete" | "purge" | "stop" | "disable" | "detach" => REMOVED,
        "skip" => DIM,
        _ => CHANGED,
    };
    format!("{}{}", paint(style, verb), &line[verb.len()..])
}

pub use sysgen_generations::text::{generation_list, human_bytes, plural, relative, rfc3339};

/// Seconds since the epoch in local time (`TZ`, else `/etc/localtime`),
/// with the zone's abbreviation: `2026-11-23 13:02:18 CET`. The library
/// never reads the environment; the binary picks the zone.
pub fn local(secs: i64) -> String {
    sysgen_generations::text::in_zone(secs, &jiff::tz::TimeZone::system())
}
