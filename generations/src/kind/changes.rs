//! The tree's changes as `diff` reports them: one record per path whose
//! entry differs, kept typed from the Merkle diff to the output. `--json`
//! writes each record directly, with the keys in the sorted order the
//! document had when every record went through a `serde_json::Value` (a
//! map sorted by key) first: building those values, and freeing them, was
//! a fifth of a large diff's time. A secret file shows neither hash nor
//! size, so that not even a hash of its content leaves the store.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use sysgen_schema::EntryPath;

use crate::manifest::Entry;

/// One path whose entry differs (`files::diff` makes them).
#[derive(Debug, Clone)]
pub struct FileChange {
    pub path: EntryPath,
    /// "added", "removed" or "changed".
    pub change: &'static str,
    pub old: Option<Entry>,
    pub new: Option<Entry>,
    /// For a change: what differs ("content, mode 0644 -> 0600", "target a -> b").
    pub what: Option<String>,
    /// For a rendered file: which template, and which of its inputs
    /// changed ("template app.conf.j2: vars port changed").
    pub template: Option<String>,
}

impl Serialize for FileChange {
    /// Keys in sorted order: change, new, old, path, template, what.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("change", self.change)?;
        if let Some(e) = &self.new {
            m.serialize_entry("new", &Shown(e))?;
        }
        if let Some(e) = &self.old {
            m.serialize_entry("old", &Shown(e))?;
        }
        m.serialize_entry("path", &self.path)?;
        if let Some(t) = &self.template {
            m.serialize_entry("template", t)?;
        }
        if let Some(w) = &self.what {
            m.serialize_entry("what", w)?;
        }
        m.end()
    }
}

/// An entry as [`Entry`]'s own serialization has it, with its keys sorted,
/// less a secret file's `hash`, `size` (and its link and attributes). The
/// fields are named without `..`, so that a field added to [`Entry`] does
/// not compile here until it is shown (or deliberately not).
struct Shown<'a>(&'a Entry);

impl Serialize for Shown<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self.0 {
            Entry::File {
                mode,
                uid,
                gid,
                secret: true,
                hash: _,
                size: _,
                xattrs: _,
                link: _,
            } => {
                if let Some(g) = gid {
                    m.serialize_entry("gid", g)?;
                }
                m.serialize_entry("mode", mode)?;
                m.serialize_entry("secret", &true)?;
                m.serialize_entry("type", "file")?;
                if let Some(u) = uid {
                    m.serialize_entry("uid", u)?;
                }
            }
            Entry::File {
                hash,
                size,
                mode,
                uid,
                gid,
                secret: false,
                xattrs,
                link,
            } => {
                if let Some(g) = gid {
                    m.serialize_entry("gid", g)?;
                }
                m.serialize_entry("hash", hash)?;
                if let Some(l) = link {
                    m.serialize_entry("link", l)?;
                }
                m.serialize_entry("mode", mode)?;
                m.serialize_entry("size", size)?;
                m.serialize_entry("type", "file")?;
                if let Some(u) = uid {
                    m.serialize_entry("uid", u)?;
                }
                if !xattrs.is_empty() {
                    m.serialize_entry("xattrs", xattrs)?;
                }
            }
            Entry::Dir {
                mode,
                uid,
                gid,
                xattrs,
            } => {
                if let Some(g) = gid {
                    m.serialize_entry("gid", g)?;
                }
                if let Some(md) = mode {
                    m.serialize_entry("mode", md)?;
                }
                m.serialize_entry("type", "dir")?;
                if let Some(u) = uid {
                    m.serialize_entry("uid", u)?;
                }
                if !xattrs.is_empty() {
                    m.serialize_entry("xattrs", xattrs)?;
                }
            }
            Entry::Symlink { target, uid, gid } => {
                if let Some(g) = gid {
                    m.serialize_entry("gid", g)?;
                }
                m.serialize_entry("target", target)?;
                m.serialize_entry("type", "symlink")?;
                if let Some(u) = uid {
                    m.serialize_entry("uid", u)?;
                }
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};
    use sysgen_store::Hash;

    use super::*;
    use crate::rootfs::Xattrs;

    fn path(p: &str) -> EntryPath {
        EntryPath::parse(p).expect("path")
    }

    fn file(secret: bool, full: bool) -> Entry {
        Entry::File {
            hash: Hash::of(b"x"),
            size: 1,
            mode: 0o640,
            uid: full.then_some(0),
            gid: full.then_some(33),
            secret,
            xattrs: if full {
                Xattrs(BTreeMap::from([
                    ("user.b".to_owned(), vec![1]),
                    ("security.capability".to_owned(), vec![0xab, 0]),
                ]))
            } else {
                Xattrs::default()
            },
            link: full.then(|| path("/a/first")),
        }
    }

    /// The record as it was made before it was kept typed: `Entry`'s own
    /// serialization through a `Value`, a secret file cut to its type,
    /// mode, owner and flag.
    fn through_value(c: &FileChange) -> Value {
        let shown = |e: &Entry| match e {
            Entry::File {
                mode,
                uid,
                gid,
                secret: true,
                ..
            } => {
                let mut v = json!({"type": "file", "mode": mode, "secret": true});
                if let Some(u) = uid {
                    v["uid"] = json!(u);
                }
                if let Some(g) = gid {
                    v["gid"] = json!(g);
                }
                v
            }
            other => serde_json::to_value(other).expect("an entry serializes"),
        };
        let mut v = json!({"path": c.path, "change": c.change});
        if let Some(e) = &c.old {
            v["old"] = shown(e);
        }
        if let Some(e) = &c.new {
            v["new"] = shown(e);
        }
        if let Some(w) = &c.what {
            v["what"] = json!(w);
        }
        if let Some(t) = &c.template {
            v["template"] = json!(t);
        }
        v
    }

    #[test]
    fn records_are_the_bytes_their_values_were() {
        let entries = [
            file(false, false),
            file(false, true),
            file(true, false),
            file(true, true),
            Entry::Dir {
                mode: None,
                uid: None,
                gid: None,
                xattrs: Xattrs::default(),
            },
            Entry::Dir {
                mode: Some(0o750),
                uid: Some(0),
                gid: Some(4),
                xattrs: Xattrs(BTreeMap::from([("user.x".to_owned(), vec![7])])),
            },
            Entry::Symlink {
                target: "../b".into(),
                uid: None,
                gid: None,
            },
            Entry::Symlink {
                target: "b".into(),
                uid: Some(1),
                gid: Some(2),
            },
        ];
        let mut changes = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let p = path(&format!("/d/{i}"));
            changes.push(FileChange {
                path: p.clone(),
                change: "added",
                old: None,
                new: Some(e.clone()),
                what: None,
                template: (i % 2 == 0).then(|| "template t.j2: vars a changed".to_owned()),
            });
            changes.push(FileChange {
                path: p.clone(),
                change: "removed",
                old: Some(e.clone()),
                new: None,
                what: None,
                template: None,
            });
            for o in &entries {
                changes.push(FileChange {
                    path: p.clone(),
                    change: "changed",
                    old: Some(o.clone()),
                    new: Some(e.clone()),
                    what: Some("content, mode 0644 -> 0600".into()),
                    template: Some("inline template".into()),
                });
            }
        }
        let values: Vec<Value> = changes.iter().map(through_value).collect();
        assert_eq!(
            serde_json::to_string_pretty(&changes).expect("serializes"),
            serde_json::to_string_pretty(&values).expect("serializes")
        );
        assert_eq!(
            serde_json::to_string(&changes).expect("serializes"),
            serde_json::to_string(&values).expect("serializes")
        );
    }
}
