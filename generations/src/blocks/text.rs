//! Blocks in a file's text, pure: find a block between its marker lines,
//! and edit a file's blocks leaving every other byte as it was.
//!
//! A block is the lines from `{comment} BEGIN sysgen {name}` to
//! `{comment} END sysgen {name}`, each marker a whole line (trailing
//! blanks allowed). Its text is what lies between the two marker lines.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::sections::Block;

/// The marker lines of block `name` with comment leader `comment`.
pub fn markers(comment: &str, name: &str) -> (String, String) {
    (
        format!("{comment} BEGIN sysgen {name}"),
        format!("{comment} END sysgen {name}"),
    )
}

/// Where a block lies in a text: `whole` from the start of its BEGIN line
/// to the end of its END line (its newline included, if any), `body`
/// between the two marker lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub whole: Range<usize>,
    pub body: Range<usize>,
}

/// The lines of `text` with their byte ranges (each with its newline).
fn lines(text: &str) -> impl Iterator<Item = (Range<usize>, &str)> {
    let mut at = 0;
    text.split_inclusive('\n').map(move |l| {
        let r = at..at + l.len();
        at += l.len();
        (r, l.trim_end())
    })
}

/// Finds block `name` (markers led by `comment`). `Err` says what is
/// wrong with its markers: a BEGIN without its END, an END first, or the
/// block twice; sysgen then cannot tell what the block holds.
pub fn find(text: &str, comment: &str, name: &str) -> Result<Option<Found>, String> {
    let (begin, end) = markers(comment, name);
    let mut open: Option<Range<usize>> = None;
    let mut found: Option<Found> = None;
    for (n, (r, l)) in lines(text).enumerate() {
        if l == begin {
            if open.is_some() || found.is_some() {
                return Err(format!(
                    "line {}: a second `{begin}`; leave one block {name} (remove the other by hand)",
                    n + 1
                ));
            }
            open = Some(r);
        } else if l == end {
            let Some(b) = open.take() else {
                return Err(format!(
                    "line {}: `{end}` without its `{begin}` before it; put the markers back or remove the line",
                    n + 1
                ));
            };
            found = Some(Found {
                whole: b.start..r.end,
                body: b.end..r.start,
            });
        }
    }
    if open.is_some() {
        return Err(format!(
            "`{begin}` has no `{end}` after it; put the END marker back or remove the block by hand"
        ));
    }
    Ok(found)
}

/// The text of block `name` in `text`, if it is there.
pub fn body<'t>(text: &'t str, comment: &str, name: &str) -> Result<Option<&'t str>, String> {
    Ok(find(text, comment, name)?.map(|f| &text[f.body]))
}

/// `text` with the blocks of `drop` (name → comment) removed and those of
/// `put` written: a block that is there gets its new text in place, one
/// that is not is added at the end. Nothing else changes, except that a
/// last line without a newline gets one before a block added after it.
pub fn edit(
    text: &str,
    put: &BTreeMap<String, Block>,
    drop: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut out = text.to_owned();
    for (name, comment) in drop {
        if let Some(f) = find(&out, comment, name)? {
            out.replace_range(f.whole, "");
        }
    }
    for (name, b) in put {
        match find(&out, &b.comment, name)? {
            Some(f) => out.replace_range(f.body, &b.text),
            None => {
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                let (begin, end) = markers(&b.comment, name);
                out.push_str(&begin);
                out.push('\n');
                out.push_str(&b.text);
                out.push_str(&end);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

    use super::*;

    fn block(text: &str) -> Block {
        Block {
            comment: "#".into(),
            text: text.into(),
            mode: None,
            validate: None,
        }
    }

    fn put(list: &[(&str, &str)]) -> BTreeMap<String, Block> {
        list.iter()
            .map(|(n, t)| (n.to_string(), block(t)))
            .collect()
    }

    fn drop(list: &[&str]) -> BTreeMap<String, String> {
        list.iter().map(|n| (n.to_string(), "#".into())).collect()
    }

    const HOSTS: &str = "127.0.0.1 localhost\n# admin's own\n::1 localhost\n";

    #[test]
    fn add_change_remove_keep_every_other_byte() {
        let added = edit(HOSTS, &put(&[("db", "10.0.0.5 db\n")]), &drop(&[])).unwrap();
        assert_eq!(
            added,
            format!("{HOSTS}# BEGIN sysgen db\n10.0.0.5 db\n# END sysgen db\n")
        );
        // The admin edits around the block; a change keeps the edits.
        let edited = added.replace("::1 localhost\n", "::1 localhost ip6\n") + "10.9.9.9 mine\n";
        let changed = edit(&edited, &put(&[("db", "10.0.0.6 db\n")]), &drop(&[])).unwrap();
        assert_eq!(changed, edited.replace("10.0.0.5 db", "10.0.0.6 db"));
        assert_eq!(body(&changed, "#", "db").unwrap(), Some("10.0.0.6 db\n"));
        // Removing it leaves exactly the admin's text.
        let removed = edit(&changed, &put(&[]), &drop(&["db"])).unwrap();
        assert_eq!(
            removed,
            HOSTS.replace("::1 localhost\n", "::1 localhost ip6\n") + "10.9.9.9 mine\n"
        );
        // Again: nothing to do, nothing changes.
        assert_eq!(edit(&removed, &put(&[]), &drop(&["db"])).unwrap(), removed);
    }

    #[test]
    fn empty_files_blocks_and_missing_newlines() {
        let one = edit("", &put(&[("a", "x\n")]), &drop(&[])).unwrap();
        assert_eq!(one, "# BEGIN sysgen a\nx\n# END sysgen a\n");
        assert_eq!(edit(&one, &put(&[]), &drop(&["a"])).unwrap(), "");
        let empty = edit("", &put(&[("a", "")]), &drop(&[])).unwrap();
        assert_eq!(empty, "# BEGIN sysgen a\n# END sysgen a\n");
        assert_eq!(body(&empty, "#", "a").unwrap(), Some(""));
        let no_nl = edit("last", &put(&[("a", "x\n")]), &drop(&[])).unwrap();
        assert_eq!(no_nl, "last\n# BEGIN sysgen a\nx\n# END sysgen a\n");
        // A block at the very end without a final newline is found whole.
        let cut = "a\n# BEGIN sysgen b\ny\n# END sysgen b";
        assert_eq!(edit(cut, &put(&[]), &drop(&["b"])).unwrap(), "a\n");
    }

    #[test]
    fn other_comment_leaders_and_names() {
        let b = Block {
            comment: "//".into(),
            text: "zone \"x\" {};\n".into(),
            mode: None,
            validate: None,
        };
        let mut p = BTreeMap::new();
        p.insert("zone-x".to_string(), b);
        let out = edit("// named\n", &p, &BTreeMap::new()).unwrap();
        assert_eq!(
            out,
            "// named\n// BEGIN sysgen zone-x\nzone \"x\" {};\n// END sysgen zone-x\n"
        );
        // Another block's markers, or another leader's, are not this one's.
        assert_eq!(body(&out, "#", "zone-x").unwrap(), None);
        assert_eq!(body(&out, "//", "zone").unwrap(), None);
    }

    #[test]
    fn broken_markers_are_named() {
        let twice = "# BEGIN sysgen a\n# END sysgen a\n# BEGIN sysgen a\n# END sysgen a\n";
        assert!(find(twice, "#", "a").unwrap_err().contains("line 3"));
        let open = "x\n# BEGIN sysgen a\ny\n";
        assert!(
            find(open, "#", "a")
                .unwrap_err()
                .contains("no `# END sysgen a`")
        );
        let stray = "# END sysgen a\n";
        assert!(find(stray, "#", "a").unwrap_err().contains("line 1"));
        assert!(edit(open, &put(&[("a", "z\n")]), &drop(&[])).is_err());
    }
}
