//! `LoadError`: what is wrong with a configuration, and where.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a configuration could not be loaded. Always names a file; syntax and
/// type errors also carry a line and column (1-based). The CLI maps every
/// `LoadError` to exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file at fault, as named by the user or by the including file's
    /// `include` (not canonicalized, so it reads like what the user wrote).
    pub file: PathBuf,
    /// 1-based line, for syntax and type errors.
    pub line: Option<usize>,
    /// 1-based column (in characters), for syntax and type errors.
    pub column: Option<usize>,
    pub kind: LoadErrorKind,
    /// For conflicts: the other file that declares the key.
    pub other_file: Option<PathBuf>,
    /// Lowercase, no trailing period; says what is wrong and what to do.
    /// Does not repeat `file`, `line` or `column` (Display adds them).
    pub message: String,
    /// Where in `file`, and what to do: boxed, as errors travel in every
    /// `Result` of the loader.
    pub detail: Box<Detail>,
}

/// The parts of a [`LoadError`] that point into the file.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Detail {
    /// The keys from the top of `file` to what is at fault (`files`,
    /// `/etc/motd`, `mode`); an array element is its string. Empty when
    /// the fault is the whole file.
    pub path: Vec<String>,
    /// What to do, when it is not already said in `message` (a "did you
    /// mean"); Display appends it.
    pub hint: Option<String>,
    /// Bytes of `source` at fault, for a snippet with a caret.
    pub span: Option<Range<usize>>,
    /// The text of `file`, when the error points into it.
    pub source: Option<Arc<str>>,
    /// For conflicts: line and column of the same keys in `other_file`.
    pub other_at: Option<(usize, usize)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadErrorKind {
    /// The file (or an included file) could not be read, or has an
    /// extension other than `.json` or `.toml`.
    Read,
    /// Not valid JSON/TOML, an unknown key, or a value of the wrong type or
    /// shape; `line` and `column` are set.
    Syntax,
    /// A value that breaks a rule of the format (SPEC §2): a bad path, a
    /// missing source, a bad package name, an unsupported version.
    Invalid,
    /// An include cycle.
    Cycle,
    /// Two declarations of one key that neither overrides, or one path
    /// declared in two sections, or a path under a file or symlink.
    Conflict,
}

impl LoadError {
    pub(crate) fn new(file: impl Into<PathBuf>, kind: LoadErrorKind, message: String) -> Self {
        LoadError {
            file: file.into(),
            line: None,
            column: None,
            kind,
            other_file: None,
            message,
            detail: Box::default(),
        }
    }

    /// Names the keys at fault explicitly, where the message does not start
    /// with them (the location is found from them later).
    pub(crate) fn key<S: AsRef<str>>(mut self, path: &[S]) -> Self {
        self.detail.path = path.iter().map(|s| s.as_ref().to_owned()).collect();
        self
    }

    /// A stable name for scripts (`--json`): what kind of mistake this is.
    pub fn code(&self) -> &'static str {
        match self.kind {
            LoadErrorKind::Read => "config-read",
            LoadErrorKind::Syntax if self.message.starts_with("unknown field") => {
                "config-unknown-key"
            }
            LoadErrorKind::Syntax if self.message.starts_with("unknown variant") => {
                "config-unknown-value"
            }
            LoadErrorKind::Syntax => "config-syntax",
            LoadErrorKind::Invalid => "config-invalid",
            LoadErrorKind::Cycle => "config-cycle",
            LoadErrorKind::Conflict => "config-conflict",
        }
    }

    /// What is wrong and what to do, apart: the message is written "what is
    /// wrong; what to do", or the hint was given on its own.
    pub fn parts(&self) -> (&str, Option<&str>) {
        match (&self.detail.hint, self.message.split_once("; ")) {
            (Some(h), _) => (&self.message, Some(h)),
            (None, Some((what, todo))) => (what, Some(todo)),
            (None, None) => (&self.message, None),
        }
    }

    pub(crate) fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    pub(crate) fn other(mut self, other: impl Into<PathBuf>) -> Self {
        self.other_file = Some(other.into());
        self
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(h) = &self.detail.hint {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

impl fmt::Debug for Detail {
    /// Without the file's text, which a failed test's message would
    /// otherwise repeat whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detail")
            .field("path", &self.path)
            .field("hint", &self.hint)
            .field("span", &self.span)
            .field("source", &self.source.as_ref().map(|s| s.len()))
            .field("other_at", &self.other_at)
            .finish()
    }
}
