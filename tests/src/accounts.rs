//! Comparing the account files and whole roots of tests on users and
//! groups (issue #13): a user that a rollback makes again is appended to
//! each account file by the shadow tools, wherever its line was, and a
//! removed user's home is moved to the kept-homes area.

use std::fs;

use crate::TestEnv;

/// The account files the shadow tools write.
pub const ACCOUNT_FILES: [&str; 6] = [
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/gshadow",
    "/etc/subuid",
    "/etc/subgid",
];

/// Every account file, whole, one after the other.
pub fn accounts(env: &TestEnv) -> String {
    ACCOUNT_FILES
        .iter()
        .map(|f| {
            let text = fs::read_to_string(env.at(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            format!("== {f}\n{text}")
        })
        .collect()
}

/// Every account file's lines, sorted: what a rollback that makes an account
/// again restores (the tools append a new line at the end of each file).
pub fn account_lines(env: &TestEnv) -> String {
    ACCOUNT_FILES
        .iter()
        .map(|f| {
            let text = fs::read_to_string(env.at(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort_unstable();
            format!("== {f}\n{}\n", lines.join("\n"))
        })
        .collect()
}

/// A `dump_tree` listing less the shadow tools' own backups (`/etc/passwd-`
/// …), which every tool rewrites.
pub fn without_backups(tree: &str) -> String {
    tree.lines()
        .filter(|l| {
            let path = l.split(' ').next().unwrap_or_default();
            !(path.starts_with("/etc/") && path.ends_with('-'))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lines of `tree` under `from`, moved to `to`.
pub fn moved(tree: &str, from: &str, to: &str) -> Vec<String> {
    tree.lines()
        .filter(|l| l.starts_with(&format!("{from}/")) || l.starts_with(&format!("{from} ")))
        .map(|l| format!("{to}{}", &l[from.len()..]))
        .collect()
}

/// Two whole trees are equal; a failure shows only the lines that differ.
#[track_caller]
pub fn same_tree(got: &str, want: &str) {
    same_tree_after(got, want, "");
}

/// [`same_tree`], a failure saying after what (`when`) the root differs.
#[track_caller]
pub fn same_tree_after(got: &str, want: &str, when: &str) {
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    let extra: Vec<&&str> = g.iter().filter(|l| !w.contains(l)).collect();
    let missing: Vec<&&str> = w.iter().filter(|l| !g.contains(l)).collect();
    assert!(
        extra.is_empty() && missing.is_empty() && g.len() == w.len(),
        "the root differs{when}\nunexpected:\n{extra:#?}\nmissing:\n{missing:#?}"
    );
}

/// Tree lines sorted by path, as `dump_tree` lists them.
pub fn sorted(lines: impl IntoIterator<Item = String>) -> String {
    let mut v: Vec<String> = lines.into_iter().collect();
    v.sort_unstable_by(|a, b| a.split(' ').next().cmp(&b.split(' ').next()));
    v.join("\n")
}
