//! `LoadError`: what is wrong with a configuration, and where.

use std::fmt;
use std::path::PathBuf;

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
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for LoadError {}
