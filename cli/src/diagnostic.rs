//! How a failed command's error reads: for a configuration error, like
//! rustc's (the line of the file with a caret under what is wrong, and
//! what to do); under `--json`, the same parts as fields.

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};
use serde::Serialize;
use sysgen_generations::Error;
use sysgen_schema::LoadError;

/// A configuration error's parts for scripts (`--json`).
#[derive(Serialize)]
pub struct Diagnostic {
    /// What kind of mistake: `config-syntax`, `config-unknown-key`,
    /// `config-unknown-value`, `config-invalid`, `config-conflict`,
    /// `config-cycle`, `config-read`.
    pub code: &'static str,
    /// What is wrong, without the file or the hint.
    pub message: String,
    pub file: String,
    /// 1-based.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based, in characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// The keys from the top of the file to what is wrong.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The configuration error in `e`: a loader's, or one found against the
/// root afterwards, whose message names the file and the keys.
fn config_error(e: &Error) -> Option<std::borrow::Cow<'_, LoadError>> {
    match e {
        Error::Config(le) => Some(std::borrow::Cow::Borrowed(le)),
        Error::Invalid(m) => sysgen_schema::located(m).map(std::borrow::Cow::Owned),
        _ => None,
    }
}

impl Diagnostic {
    /// `None` for an error that is not about a configuration file.
    pub fn new(e: &Error) -> Option<Diagnostic> {
        let le = config_error(e)?;
        let (message, hint) = le.parts();
        Some(Diagnostic {
            code: le.code(),
            message: message.to_owned(),
            file: le.file.display().to_string(),
            line: le.line,
            column: le.column,
            path: le.detail.path.clone(),
            hint: hint.map(str::to_owned),
        })
    }
}

/// Writes `e` to stderr for people.
pub fn eprint(e: &Error) {
    // An error found after loading keeps its first line as it was written
    // ("FILE: LABEL: what"); the snippet's `-->` line says where.
    let title = match e {
        Error::Invalid(m) => Some(m.split_once("; ").map_or(m.as_str(), |(what, _)| what)),
        _ => None,
    };
    // Styled always; anstream strips the colour unless `--color` and the
    // terminal (and `NO_COLOR`) allow it, as for every other output.
    match config_error(e).and_then(|le| snippet(&le, title, true)) {
        Some(text) => anstream::eprintln!("{text}"),
        None => eprintln!("error: {e}"),
    }
}

/// The error with the file's line(s) and a caret; `None` when it points at
/// no text (the file named on the command line cannot be read).
fn snippet(le: &LoadError, title: Option<&str>, colour: bool) -> Option<String> {
    // A password written in the clear is refused, and never repeated back:
    // its line is not shown.
    if le.detail.path.iter().any(|k| k == "password") {
        return None;
    }
    let (source, span) = (le.detail.source.as_deref()?, le.detail.span.clone()?);
    let (message, hint) = le.parts();
    let file = le.file.display().to_string();
    // The first line keeps `file:line:column: message` whole: it is what a
    // terminal makes clickable and what grep finds, as before snippets.
    let title = match (title, le.line, le.column) {
        (Some(t), _, _) => t.to_owned(),
        (None, Some(l), Some(c)) => format!("{file}:{l}:{c}: {message}"),
        (None, _, _) => format!("{file}: {message}"),
    };
    let mut group = Level::ERROR.primary_title(title).element(
        Snippet::source(source)
            .path(file.as_str())
            .annotation(AnnotationKind::Primary.span(span)),
    );
    if let Some(other) = &le.other_file {
        let at = le
            .detail
            .other_at
            .map_or(String::new(), |(l, c)| format!(":{l}:{c}"));
        group =
            group.element(Level::NOTE.message(format!("also declared in {}{at}", other.display())));
    }
    if let Some(h) = hint {
        group = group.element(Level::HELP.message(h));
    }
    let renderer = if colour {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    Some(renderer.render(&[group]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_semantic_error_reads_like_rustc() {
        let dir = tempfile_dir();
        let cfg = dir.join("c.json");
        std::fs::write(
            &cfg,
            "{\n  \"services\": {\n    \"a.service\": { \"check_timeout\": 5 }\n  }\n}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let e = sysgen_schema::load(&cfg, &Default::default()).expect_err("invalid");
        let text = snippet(&e, None, false).expect("a snippet");
        let want = format!(
            "error: {f}:3:20: services.a.service.check_timeout: there is no check to time\n \
             --> {f}:3:20\n  |\n3 |     \"a.service\": {{ \"check_timeout\": 5 }}\n  \
             |                    ^^^^^^^^^^^^^^^\n  |\n  = help: add check or remove check_timeout",
            f = cfg.display()
        );
        assert_eq!(text, want);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("sysgen-diag-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        d
    }
}
