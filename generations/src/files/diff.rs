//! The tree's part of `diff`: a [`FileChange`] per path whose entry
//! differs, saying what differs and which template a rendered file comes
//! from.

use crate::kind::FileChange;
use crate::manifest::{Change, Entry};
use crate::rootfs::Xattrs;
use crate::rootfs::xattr::CAPABILITY;
use crate::sections::{TemplateUse, Templates};

impl From<Change> for FileChange {
    fn from(c: Change) -> FileChange {
        let (path, change, old, new) = match c {
            Change::Added(p, e) => (p, "added", None, Some(e)),
            Change::Removed(p, e) => (p, "removed", Some(e), None),
            Change::Changed(p, o, n) => (p, "changed", Some(*o), Some(*n)),
        };
        let what = old
            .as_ref()
            .zip(new.as_ref())
            .map(|(o, n)| what_changed(o, n));
        FileChange {
            path,
            change,
            old,
            new,
            what,
            template: None,
        }
    }
}

/// Says, for every rendered file among `changes`, which template it comes
/// from and which of its inputs changed between the two generations.
pub fn note_templates(changes: &mut [FileChange], old: &Templates, new: &Templates) {
    for c in changes.iter_mut() {
        let Some(n) = new.0.get(&c.path).or_else(|| old.0.get(&c.path)) else {
            continue;
        };
        let name = match &n.source {
            Some(s) => format!("template {s}"),
            None => "inline template".to_owned(),
        };
        let why = match (c.change, old.0.get(&c.path), new.0.get(&c.path)) {
            ("changed", Some(o), Some(n)) => template_inputs(o, n),
            ("changed", None, Some(_)) => Some("now rendered".to_owned()),
            ("changed", Some(_), None) => Some("no longer rendered".to_owned()),
            _ => None,
        };
        c.template = Some(match why {
            Some(w) => format!("{name}: {w}"),
            None => name,
        });
    }
}

/// "text changed", "vars port, host.arch changed", "secret db changed or
/// its value did": what differs between two renderings' inputs.
fn template_inputs(o: &TemplateUse, n: &TemplateUse) -> Option<String> {
    let mut w = Vec::new();
    if o.text != n.text || o.source != n.source {
        w.push("text changed".to_owned());
    }
    let vars: Vec<&str> = o
        .vars
        .keys()
        .chain(n.vars.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| o.vars.get(*k) != n.vars.get(*k))
        .map(String::as_str)
        .collect();
    if !vars.is_empty() {
        let s = if vars.len() == 1 { "" } else { "s" };
        w.push(format!("var{s} {} changed", vars.join(", ")));
    }
    if w.is_empty() && !n.secrets.is_empty() {
        // Only the names are recorded: a changed secret value is the one
        // input left that can change the output.
        let names: Vec<&str> = n.secrets.iter().map(String::as_str).collect();
        let s = if names.len() == 1 { "" } else { "s" };
        w.push(format!("secret{s} {} changed", names.join(", ")));
    }
    (!w.is_empty()).then(|| w.join(", "))
}

/// "content, mode 0644 -> 0600, owner", "target a -> b", "file -> symlink".
fn what_changed(o: &Entry, n: &Entry) -> String {
    match (o, n) {
        (
            Entry::File {
                hash: h1,
                mode: m1,
                uid: u1,
                gid: g1,
                xattrs: x1,
                link: l1,
                ..
            },
            Entry::File {
                hash: h2,
                mode: m2,
                uid: u2,
                gid: g2,
                xattrs: x2,
                link: l2,
                ..
            },
        ) => {
            let mut w = Vec::new();
            if h1 != h2 {
                w.push("content".to_owned());
            }
            if m1 != m2 {
                w.push(format!("mode {m1:04o} -> {m2:04o}"));
            }
            if u1 != u2 || g1 != g2 {
                w.push("owner".to_owned());
            }
            if x1 != x2 {
                w.push(xattrs_changed(x1, x2));
            }
            if l1 != l2 {
                w.push(match l2 {
                    Some(to) => format!("hard link of {to}"),
                    None => "no longer a hard link".to_owned(),
                });
            }
            w.join(", ")
        }
        (Entry::Symlink { target: a, .. }, Entry::Symlink { target: b, .. }) if a != b => {
            format!("target {a} -> {b}")
        }
        (Entry::Symlink { .. }, Entry::Symlink { .. }) => "owner".into(),
        (Entry::Dir { xattrs: x1, .. }, Entry::Dir { xattrs: x2, .. }) if x1 != x2 => {
            format!("attributes, {}", xattrs_changed(x1, x2))
        }
        (Entry::Dir { .. }, Entry::Dir { .. }) => "attributes".into(),
        _ => format!("{} -> {}", o.kind(), n.kind()),
    }
}

/// "caps cap_net_raw=ep -> none", or the extended attributes in general.
fn xattrs_changed(x1: &Xattrs, x2: &Xattrs) -> String {
    let caps = |x: &Xattrs| {
        super::caps::describe(x)
            .into_iter()
            .find_map(|d| d.strip_prefix("caps ").map(str::to_owned))
            .unwrap_or_else(|| "none".into())
    };
    let (c1, c2) = (caps(x1), caps(x2));
    fn others(x: &Xattrs) -> Vec<(&String, &Vec<u8>)> {
        x.0.iter()
            .filter(|(k, _)| k.as_str() != CAPABILITY)
            .collect()
    }
    let mut w = Vec::new();
    if c1 != c2 {
        w.push(format!("caps {c1} -> {c2}"));
    }
    if others(x1) != others(x2) {
        w.push("xattrs".to_owned());
    }
    w.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysgen_schema::EntryPath;
    use sysgen_store::Hash;

    fn file(secret: bool) -> Entry {
        Entry::File {
            hash: Hash::of(b"x"),
            size: 1,
            mode: 0o600,
            uid: Some(0),
            gid: None,
            secret,
            xattrs: Default::default(),
            link: None,
        }
    }

    fn json(e: Entry) -> serde_json::Value {
        let c = FileChange::from(Change::Added(EntryPath::parse("/a").expect("path"), e));
        serde_json::to_value(&c).expect("serializes")
    }

    #[test]
    fn a_secret_entry_shows_neither_hash_nor_size() {
        let plain = json(file(false));
        let secret = json(file(true));
        assert_eq!(plain["new"]["size"], 1);
        assert!(plain["new"]["hash"].is_string());
        assert_eq!(
            secret["new"],
            serde_json::json!({"type": "file", "mode": 0o600, "uid": 0, "secret": true})
        );
        assert!(secret.get("old").is_none() && secret.get("what").is_none());
    }

    #[test]
    fn a_change_says_what_differs() {
        let c = FileChange::from(Change::changed(
            EntryPath::parse("/a").expect("path"),
            file(false),
            Entry::Symlink {
                target: "b".into(),
                uid: None,
                gid: None,
            },
        ));
        assert_eq!(c.what.as_deref(), Some("file -> symlink"));
    }
}
