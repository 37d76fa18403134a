//! The rules of `blocks`, of `files.<path>.validate` and of the
//! generation-level `checks`, for one configuration file (step 2 of
//! `load`), and the rule on the merged blocks (step 3).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{LoadError, LoadErrorKind as Kind};
use crate::raw::{RawBlock, RawCheck, RawConfig};
use crate::{BlockSpec, Check, DEFAULT_BLOCK_COMMENT, DEFAULT_CHECK_TIMEOUT_SECS, EntryPath};

use super::check::Decls;

/// Longest block name: it is written into two marker lines.
const MAX_NAME: usize = 64;
/// Longest comment leader (`#`, `//`, `;`, `--`, `rem`…).
const MAX_COMMENT: usize = 16;

/// `files.<path>.validate`: a command with `%s` where the staged copy goes.
pub(super) fn validate_command(label: &str, v: &Option<String>) -> Result<Option<String>, String> {
    let Some(cmd) = v else {
        return Ok(None);
    };
    if cmd.trim().is_empty() {
        return Err(format!(
            "{label}.validate: the command is empty; write a command such as \"visudo -cf %s\" or remove validate"
        ));
    }
    if !cmd.contains("%s") {
        return Err(format!(
            "{label}.validate: {cmd:?} has no %s; write %s where the staged copy of the file goes, e.g. \"visudo -cf %s\""
        ));
    }
    if cmd.contains(|c: char| c.is_control()) {
        return Err(format!(
            "{label}.validate: the command contains a control character; write it on one line"
        ));
    }
    Ok(Some(cmd.clone()))
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_NAME
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Checks one file's `blocks` and `checks` into `d`.
pub(super) fn check_blocks(
    raw: &RawConfig,
    path: &dyn Fn(&str, &str) -> Result<EntryPath, LoadError>,
    invalid: &dyn Fn(String) -> LoadError,
    origin: &Path,
    d: &mut Decls,
) -> Result<(), LoadError> {
    for (k, blocks) in &raw.blocks {
        let p = path("blocks", k)?;
        if blocks.is_empty() {
            return Err(invalid(format!(
                "blocks.{p}: no block is declared; declare one (\"name\": \"text\") or remove the path"
            )));
        }
        let mut mode = None;
        let mut validate: Option<String> = None;
        for (name, b) in blocks {
            let label = format!("blocks.{p}.{name}");
            if !valid_name(name) {
                return Err(invalid(format!(
                    "{label}: invalid block name; use up to {MAX_NAME} letters, digits, '_', '.' and '-', starting with a letter or digit"
                )));
            }
            let (text, comment, m, v) = match b {
                RawBlock::Text(t) => (t, None, None, None),
                RawBlock::Full(o) => (
                    &o.content,
                    o.comment.as_deref(),
                    o.mode.map(|m| m.0),
                    validate_command(&label, &o.validate).map_err(invalid)?,
                ),
            };
            let comment = comment.unwrap_or(DEFAULT_BLOCK_COMMENT);
            if comment.is_empty()
                || comment.len() > MAX_COMMENT
                || comment.contains(|c: char| c.is_control() || c.is_whitespace())
            {
                return Err(invalid(format!(
                    "{label}.comment: {comment:?} cannot lead a marker line; write what starts a comment in this file, such as \"#\" or \"//\" (at most {MAX_COMMENT} characters, no spaces)"
                )));
            }
            if text.contains('\0') {
                return Err(invalid(format!(
                    "{label}: the text contains a NUL byte; a block holds text"
                )));
            }
            let begin = format!("{comment} BEGIN sysgen ");
            let end = format!("{comment} END sysgen ");
            if let Some(l) = text
                .lines()
                .find(|l| l.trim().starts_with(&begin) || l.trim().starts_with(&end))
            {
                return Err(invalid(format!(
                    "{label}: the line {:?} looks like a block marker; sysgen could not tell where the block ends: reword it",
                    l.trim()
                )));
            }
            if let (Some(a), Some(b)) = (mode, m)
                && a != b
            {
                return Err(invalid(format!(
                    "blocks.{p}: the blocks give the file different modes ({a} and {b}); give the mode once, or the same in each"
                )));
            }
            mode = mode.or(m);
            if let (Some(a), Some(b)) = (&validate, &v)
                && a != b
            {
                return Err(invalid(format!(
                    "blocks.{p}: the blocks give the file different validate commands; give it once, or the same in each"
                )));
            }
            validate = validate.or(v.clone());
            let mut text = text.clone();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            let spec = BlockSpec {
                text,
                comment: comment.to_owned(),
                mode: m,
                declared_in: origin.to_path_buf(),
                validate: v,
            };
            d.blocks.insert((p.clone(), name.clone()), spec);
        }
    }
    for (i, c) in raw.checks.iter().enumerate() {
        let (command, timeout) = match c {
            RawCheck::Command(c) => (c, None),
            RawCheck::Full(o) => (&o.command, o.timeout),
        };
        if command.trim().is_empty() {
            return Err(invalid(format!(
                "checks[{i}]: the command is empty; write a command or remove it"
            )));
        }
        if let Some(t) = timeout.filter(|t| !(1..=3600).contains(t)) {
            return Err(invalid(format!(
                "checks[{i}].timeout: {t} is out of range; give 1 to 3600 seconds"
            )));
        }
        let check = Check {
            command: command.clone(),
            timeout_secs: timeout.unwrap_or(DEFAULT_CHECK_TIMEOUT_SECS),
        };
        if !d.checks.contains(&check) {
            d.checks.push(check);
        }
    }
    Ok(())
}

/// The merged blocks, by file; blocks of one file declared in several
/// configuration files must still agree on the mode of a created file.
pub(super) fn by_file(
    blocks: BTreeMap<(EntryPath, String), BlockSpec>,
) -> Result<BTreeMap<EntryPath, BTreeMap<String, BlockSpec>>, LoadError> {
    let mut out: BTreeMap<EntryPath, BTreeMap<String, BlockSpec>> = BTreeMap::new();
    for ((p, name), b) in blocks {
        let differ = |o: &BlockSpec| {
            (o.mode.is_some() && b.mode.is_some() && o.mode != b.mode)
                || (o.validate.is_some() && b.validate.is_some() && o.validate != b.validate)
        };
        if let Some(other) = out.get(&p).and_then(|m| m.values().find(|o| differ(o))) {
            return Err(LoadError::new(
                &b.declared_in,
                Kind::Conflict,
                format!(
                    "blocks.{p}.{name}: gives the file mode {} and validate {:?}, but another block of it gives {} and {:?} (in {}); give the same",
                    b.mode.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                    b.validate.as_deref().unwrap_or("-"),
                    other.mode.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                    other.validate.as_deref().unwrap_or("-"),
                    other.declared_in.display()
                ),
            )
            .other(&other.declared_in));
        }
        out.entry(p).or_default().insert(name, b);
    }
    Ok(out)
}

/// The checks of every file, each once, in the order the files were read
/// (the top-level file first, then its includes).
pub(super) fn all_checks<'a>(decls: impl Iterator<Item = &'a Decls>) -> Vec<Check> {
    let mut out: Vec<Check> = Vec::new();
    for d in decls {
        for c in &d.checks {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_names() {
        for n in ["db", "a.b-c_d", "0x", &"a".repeat(MAX_NAME)] {
            assert!(valid_name(n), "{n}");
        }
        for n in ["", "-a", ".a", "a b", "a/b", "é", &"a".repeat(MAX_NAME + 1)] {
            assert!(!valid_name(n), "{n}");
        }
    }

    #[test]
    fn validate_commands_need_their_placeholder() {
        let v = |s: &str| validate_command("files./etc/x", &Some(s.to_owned()));
        assert_eq!(v("visudo -cf %s"), Ok(Some("visudo -cf %s".to_owned())));
        assert!(v("visudo -cf").unwrap_err().contains("has no %s"));
        assert!(v("  ").unwrap_err().contains("the command is empty"));
        assert!(v("a %s\nb").unwrap_err().contains("control character"));
        assert_eq!(validate_command("files./etc/x", &None), Ok(None));
    }
}
