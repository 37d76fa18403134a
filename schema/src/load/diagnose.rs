//! Errors that point: the keys, line and column, and the text of the file
//! at fault (for a snippet), and "did you mean" for an unknown key or value.

use std::path::Path;
use std::sync::Arc;

use crate::error::{LoadError, LoadErrorKind as Kind};
use crate::locate::{Doc, Place};

use super::{Format, format_of, line_col, read_config};

/// A syntax or type error of serde at `line:column` (1-based), `keys` the
/// path serde was at. The message loses serde's list of expected names
/// when a hint says better.
pub(super) fn syntax(
    shown: &Path,
    text: &str,
    json: bool,
    message: String,
    at: (usize, usize),
    keys: Vec<String>,
) -> LoadError {
    let (message, hint) = did_you_mean(message);
    let mut e = LoadError::new(shown, Kind::Syntax, message).at(at.0.max(1), at.1.max(1));
    e.detail.hint = hint;
    e.detail.path = keys;
    let offset = offset_of(text, e.line.unwrap_or(1), e.column.unwrap_or(1));
    // Without keys (a plain syntax error) serde's position is all there is.
    let found = (!e.detail.path.is_empty())
        .then(|| Doc::parse(text, json).and_then(|doc| doc.find(&e.detail.path)))
        .flatten();
    // An unknown key is the key; a bad value is the value. serde's position
    // (at or after the token) must agree: a duplicate key's keys also name
    // its first declaration.
    let found = found
        .map(|Place { span, value, .. }| match e.code() {
            "config-unknown-key" => span,
            _ => value.unwrap_or(span),
        })
        .filter(|span| span.start <= offset && offset <= span.end)
        .filter(|_| !e.message.starts_with("duplicate key"));
    match found {
        Some(span) => set_span(&mut e, text, span),
        None => {
            let end = text[offset..]
                .chars()
                .next()
                .map_or(offset, |c| offset + c.len_utf8());
            // serde_json stops on a key's closing quote: underline the key.
            let start = match (json, text[offset..].starts_with('"')) {
                (true, true) => text[..offset].rfind('"').unwrap_or(offset),
                _ => offset,
            };
            e.detail.span = Some(start..end);
        }
    }
    e.detail.source = Some(Arc::from(text));
    e
}

/// Where a rule's error is: from its explicit keys, or from the label its
/// message starts with (`files./etc/motd: ...`). Errors about another file
/// (an include that cannot be read names the including file) or already
/// placed pass unchanged.
pub(super) fn place(mut e: LoadError, shown: &Path, text: &str, json: bool) -> LoadError {
    if e.file != shown || e.detail.source.is_some() {
        return e;
    }
    if let Some(doc) = Doc::parse(text, json) {
        let found = if e.detail.path.is_empty() {
            e.message
                .split_once(": ")
                .and_then(|(label, _)| doc.resolve(label))
        } else {
            doc.find(&e.detail.path)
        };
        if let Some(p) = found {
            e.detail.path = p.path;
            set_span(&mut e, text, p.span);
        }
    }
    e.detail.source = Some(Arc::from(text));
    e
}

/// A merge error: placed in its file, and the same keys found in the
/// other file it names.
pub(super) fn place_conflict(e: LoadError, nodes: &[super::Node]) -> LoadError {
    let is_json = |p: &Path| matches!(format_of(p), Some(Format::Json));
    let Some(n) = nodes.iter().find(|n| n.shown == e.file) else {
        return e;
    };
    let mut e = place(e, &n.shown, &n.text, is_json(&n.shown));
    let other = e
        .other_file
        .as_ref()
        .and_then(|o| nodes.iter().find(|n| n.shown == *o));
    if let Some(o) = other {
        e.detail.other_at = Doc::parse(&o.text, is_json(&o.shown))
            .and_then(|doc| doc.find(&e.detail.path))
            .map(|p| line_col(&o.text, p.span.start));
    }
    e
}

/// An error found after loading, against the root or the sources (an
/// owner the root does not have, a tree's content), written "FILE: LABEL:
/// what": the same error, pointing into FILE. `None` when the message does
/// not name a configuration file that can be read.
pub fn located(message: &str) -> Option<LoadError> {
    let (file, rest) = message.split_once(": ")?;
    let file = Path::new(file);
    let json = match format_of(file)? {
        Format::Json => true,
        Format::Toml => false,
    };
    let text = read_config(file).ok()?;
    let mut e = LoadError::new(file, Kind::Invalid, rest.to_owned());
    // An owner or group the root lacks: its key, where it is written.
    if let Some((label, what)) = rest.split_once(": ") {
        let field = match what.split(' ').next() {
            Some("user") => Some("owner"),
            Some("group") => Some("group"),
            _ => None,
        };
        let doc = Doc::parse(&text, json);
        if let Some((field, Some(at))) = field.zip(doc.as_ref().map(|d| d.resolve(label))) {
            let mut keys = at.path;
            keys.push(field.to_owned());
            if doc.as_ref().and_then(|d| d.find(&keys)).is_some() {
                e.detail.path = keys;
            }
        }
    }
    let e = place(e, file, &text, json);
    e.line.is_some().then_some(e)
}

/// A mode written as a decimal (TOML) or any number (JSON).
pub(super) fn number_modes(shown: &Path, text: &str, json: bool) -> Result<(), LoadError> {
    // Parsed a second time only when a mode may be there.
    if !text.contains("mode") {
        return Ok(());
    }
    let Some(doc) = Doc::parse(text, json) else {
        return Ok(());
    };
    match crate::locate::number_modes(&doc, text) {
        None => Ok(()),
        Some((p, msg)) => {
            let mut e = LoadError::new(shown, Kind::Invalid, msg);
            e.detail.path = p.path;
            set_span(&mut e, text, p.span);
            e.detail.source = Some(Arc::from(text));
            Err(e)
        }
    }
}

fn set_span(e: &mut LoadError, text: &str, span: std::ops::Range<usize>) {
    let (l, c) = line_col(text, span.start);
    e.line = Some(l);
    e.column = Some(c);
    e.detail.span = Some(span);
}

/// The byte offset of 1-based `line:column` (column in characters).
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let rest = &text[start.min(text.len())..];
    start
        + rest
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(rest.len(), |(i, _)| i)
}

/// serde writes "unknown field `x`, expected one of `a`, `b`" (or
/// "expected `a` or `b`", "there are no fields"); the same for variants.
/// Returns the message without the list, and the nearest name as a hint,
/// or the list when none is near.
fn did_you_mean(message: String) -> (String, Option<String>) {
    let Some((head, expected)) = message.split_once(", expected ") else {
        return (message, None);
    };
    let Some(unknown) = head
        .strip_prefix("unknown field `")
        .or_else(|| head.strip_prefix("unknown variant `"))
        .and_then(|s| s.strip_suffix('`'))
    else {
        return (message, None);
    };
    let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let hint = match nearest(unknown, &names) {
        Some(n) => format!("did you mean `{n}`?"),
        None => format!("expected {expected}"),
    };
    (head.to_owned(), Some(hint))
}

/// For a unit name with a misspelt suffix (`nginx.servce`), the name with
/// the nearest suffix.
pub(super) fn unit_suffix_hint(unit: &str, suffixes: &[&str]) -> Option<String> {
    let (stem, suffix) = unit.rsplit_once('.')?;
    let names: Vec<&str> = suffixes.iter().map(|s| s.trim_start_matches('.')).collect();
    let near = nearest(suffix, &names).filter(|&n| n != suffix)?;
    (!stem.is_empty()).then(|| format!("did you mean `{stem}.{near}`?"))
}

/// The closest of `names` to `word`, if it is close: `restart-on` is
/// `restart_on`, and a typo or two in a longer word.
pub(crate) fn nearest<'n>(word: &str, names: &[&'n str]) -> Option<&'n str> {
    let norm = |s: &str| s.to_lowercase().replace('-', "_");
    let w = norm(word);
    names
        .iter()
        .map(|&n| (strsim::normalized_damerau_levenshtein(&w, &norm(n)), n))
        .filter(|&(score, _)| score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let (m, h) = did_you_mean(
            "unknown field `restart-on`, expected one of `enable`, `restart_on`, `reload_on`"
                .into(),
        );
        assert_eq!(m, "unknown field `restart-on`");
        assert_eq!(h.as_deref(), Some("did you mean `restart_on`?"));
        let (_, h) = did_you_mean(
            "unknown variant `brtfs`, expected one of `directory`, `btrfs`, `zfs`".into(),
        );
        assert_eq!(h.as_deref(), Some("did you mean `btrfs`?"));
        let (m, h) = did_you_mean("unknown field `zzz`, expected `a` or `b`".into());
        assert_eq!(m, "unknown field `zzz`");
        assert_eq!(h.as_deref(), Some("expected `a` or `b`"));
        let (m, h) = did_you_mean("invalid type: integer `4`".into());
        assert_eq!((m.as_str(), h), ("invalid type: integer `4`", None));
        assert_eq!(nearest("filez", &["files", "trees"]), Some("files"));
        assert_eq!(nearest("Services", &["services"]), Some("services"));
        assert_eq!(nearest("x", &["files", "trees"]), None);
        let units = [".service", ".socket", ".timer"];
        assert_eq!(
            unit_suffix_hint("nginx.servce", &units).as_deref(),
            Some("did you mean `nginx.service`?")
        );
        assert_eq!(unit_suffix_hint("nginx", &units), None);
        assert_eq!(unit_suffix_hint("a.slice", &units), None);
    }

    #[test]
    fn offsets() {
        let t = "ab\ncé\nx";
        assert_eq!(offset_of(t, 1, 1), 0);
        assert_eq!(offset_of(t, 2, 3), 6);
        assert_eq!(offset_of(t, 3, 1), 7);
        assert_eq!(offset_of(t, 9, 9), 8);
    }
}
