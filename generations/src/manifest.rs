//! Manifests: what a generation puts on a root, as a Merkle tree.
//!
//! Every directory of a generation is a [`Node`]: its entries sorted by
//! name, each directory entry carrying the [`NodeId`] of its own node. A
//! node's id is the BLAKE3 of its canonical encoding, so two generations
//! share every unchanged subtree, and [`diff`] skips a subtree as soon as
//! the two ids are equal: its cost grows with the number of changes (times
//! their depth), not with the size of the tree, as in git and OSTree.
//!
//! The generation id is the hash of the top record ([`Manifest`]), which
//! names the root node and the host.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;
use sysgen_store::{Area, Hash};

use crate::rootfs::Xattrs;

mod flat;

/// The id of a directory node: BLAKE3 of its canonical encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub Hash);

/// The id of a generation: BLAKE3 of its manifest's canonical encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GenerationId(pub Hash);

impl fmt::Display for GenerationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
impl fmt::Debug for GenerationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gen:{:?}", self.0)
    }
}
impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node:{:?}", self.0)
    }
}

impl GenerationId {
    /// The first 12 hex digits, as shown to people.
    pub fn short(&self) -> String {
        self.0.to_hex()[..12].to_owned()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One entry of a generation, as it must be on the root.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    deny_unknown_fields,
    try_from = "flat::FlatEntry"
)]
pub enum Entry {
    File {
        hash: Hash,
        size: u64,
        mode: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
        #[serde(default, skip_serializing_if = "is_false")]
        secret: bool,
        /// Extended attributes (a capability, ACLs, `user.*` a tree asked
        /// for); absent when none, so other ids do not change.
        #[serde(default, skip_serializing_if = "Xattrs::is_empty")]
        xattrs: Xattrs,
        /// Another name of the same file in this generation (the first in
        /// path order of a tree's hard links): put on the root as a hard
        /// link to it. Its other fields are that file's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<EntryPath>,
    },
    /// `mode: None` is a parent directory that sysgen only makes sure
    /// exists: created 0755 when absent, its attributes not managed.
    Dir {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
        #[serde(default, skip_serializing_if = "Xattrs::is_empty")]
        xattrs: Xattrs,
    },
    /// `uid`/`gid`: a tree's symlink keeps its source's owner; a declared
    /// symlink's owner is not managed.
    Symlink {
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
    },
}

impl Entry {
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::File { .. } => "file",
            Entry::Dir { .. } => "directory",
            Entry::Symlink { .. } => "symlink",
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self, Entry::Dir { .. })
    }

    /// The store area that holds a file's content.
    pub fn area(&self) -> Area {
        match self {
            Entry::File { secret: true, .. } => Area::Secret,
            _ => Area::Public,
        }
    }

    pub fn is_secret(&self) -> bool {
        matches!(self, Entry::File { secret: true, .. })
    }
}

/// One name in a directory node.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub name: String,
    pub entry: Entry,
    /// For a directory: the node of its contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<NodeId>,
}

/// A directory's contents, sorted by name.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Node {
    pub entries: Vec<NodeEntry>,
}

impl Node {
    /// The canonical encoding: compact JSON, entries sorted by name, fields
    /// in declaration order. Its BLAKE3 is the node id, so a failure is an
    /// error, never an empty body that would hash to a wrong id.
    pub fn encode(&self) -> Result<Vec<u8>, crate::Error> {
        serde_json::to_vec(self)
            .map_err(|e| crate::Error::Internal(format!("encoding a node: {e}")))
    }

    pub fn decode(bytes: &[u8]) -> Result<Node, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn id_of(encoded: &[u8]) -> NodeId {
        NodeId(Hash::of(encoded))
    }
}

/// The top record of a generation.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub sysgen: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub root: NodeId,
    /// Declared systemd units; absent when there are none, so the ids of
    /// generations without services do not change.
    #[serde(default, skip_serializing_if = "crate::sections::Services::is_empty")]
    pub services: crate::sections::Services,
    #[serde(default, skip_serializing_if = "crate::sections::PackageSet::is_empty")]
    pub packages: crate::sections::PackageSet,
    #[serde(default, skip_serializing_if = "crate::sections::Datasets::is_empty")]
    pub datasets: crate::sections::Datasets,
    /// What the rendered files were rendered from (for `diff`); absent
    /// when no file is a template.
    #[serde(default, skip_serializing_if = "crate::sections::Templates::is_empty")]
    pub templates: crate::sections::Templates,
    #[serde(default, skip_serializing_if = "crate::sections::Blocks::is_empty")]
    pub blocks: crate::sections::Blocks,
    #[serde(default, skip_serializing_if = "crate::sections::Checks::is_empty")]
    pub checks: crate::sections::Checks,
    #[serde(
        default,
        skip_serializing_if = "crate::sections::Validations::is_empty"
    )]
    pub validate: crate::sections::Validations,
    #[serde(default, skip_serializing_if = "crate::accounts::Accounts::is_empty")]
    pub accounts: crate::accounts::Accounts,
}

impl Manifest {
    /// The canonical encoding; its BLAKE3 is the generation id.
    pub fn encode(&self) -> Result<Vec<u8>, crate::Error> {
        serde_json::to_vec(self)
            .map_err(|e| crate::Error::Internal(format!("encoding a manifest: {e}")))
    }

    pub fn id(&self) -> Result<GenerationId, crate::Error> {
        Ok(GenerationId(Hash::of(&self.encode()?)))
    }
}

/// Reads nodes by id (from the database, or from memory in tests).
pub trait NodeSource {
    fn node(&self, id: &NodeId) -> Result<Node, crate::Error>;
}

impl NodeSource for BTreeMap<NodeId, Node> {
    fn node(&self, id: &NodeId) -> Result<Node, crate::Error> {
        self.get(id).cloned().ok_or(crate::Error::MissingNode(id.0))
    }
}

/// Builds the Merkle tree of a complete set of entries, given in path order
/// (every ancestor of every entry present as a directory); `entry` gives
/// each one's [`Entry`]. Hands every node to `sink` once, as soon as it is
/// made (children before their parent), and returns the root node id: a
/// large build then never holds all its encoded nodes at once.
pub fn build_tree<'a, T: 'a, E: From<crate::Error>>(
    entries: impl IntoIterator<Item = (&'a EntryPath, &'a T)>,
    entry: &dyn Fn(&T) -> Entry,
    sink: &mut dyn FnMut(NodeId, Vec<u8>) -> Result<(), E>,
) -> Result<NodeId, E> {
    // Children of each directory, by parent ("" for the root).
    let mut children: BTreeMap<&str, Vec<(&EntryPath, &T)>> = BTreeMap::new();
    for (p, e) in entries {
        let parent = match p.as_str().rfind('/') {
            Some(i) => &p.as_str()[..i],
            None => "",
        };
        children.entry(parent).or_default().push((p, e));
    }
    let mut tree = Tree {
        children,
        entry,
        seen: std::collections::HashSet::new(),
        sink,
    };
    tree.node_for("")
}

struct Tree<'a, 's, T, E> {
    children: BTreeMap<&'a str, Vec<(&'a EntryPath, &'a T)>>,
    entry: &'s dyn Fn(&T) -> Entry,
    seen: std::collections::HashSet<NodeId>,
    sink: &'s mut dyn FnMut(NodeId, Vec<u8>) -> Result<(), E>,
}

impl<T, E: From<crate::Error>> Tree<'_, '_, T, E> {
    fn node_for(&mut self, dir: &str) -> Result<NodeId, E> {
        let mut node = Node::default();
        let kids = self.children.remove(dir).unwrap_or_default();
        node.entries.reserve_exact(kids.len());
        for (p, e) in kids {
            let entry = (self.entry)(e);
            let tree = if entry.is_dir() {
                Some(self.node_for(p.as_str())?)
            } else {
                None
            };
            node.entries.push(NodeEntry {
                name: p.file_name().to_owned(),
                entry,
                tree,
            });
        }
        // Siblings share their parent's prefix, so path order is name order.
        debug_assert!(node.entries.windows(2).all(|w| w[0].name < w[1].name));
        let bytes = node.encode()?;
        let id = Node::id_of(&bytes);
        if self.seen.insert(id) {
            (self.sink)(id, bytes)?;
        }
        Ok(id)
    }
}

/// One difference between two generations.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Change {
    Added(EntryPath, Entry),
    Removed(EntryPath, Entry),
    Changed(EntryPath, Entry, Entry),
}

impl Change {
    pub fn path(&self) -> &EntryPath {
        match self {
            Change::Added(p, _) | Change::Removed(p, _) | Change::Changed(p, _, _) => p,
        }
    }
}

/// Every difference from tree `a` to tree `b` (`None`: the empty tree),
/// sorted by path. Equal subtrees are skipped without being read.
pub fn diff(
    src: &dyn NodeSource,
    a: Option<NodeId>,
    b: Option<NodeId>,
) -> Result<Vec<Change>, crate::Error> {
    let mut out = Vec::new();
    diff_dir(src, None, a, b, &mut out)?;
    out.sort_by(|x, y| x.path().cmp(y.path()));
    Ok(out)
}

/// Every entry of a tree, sorted by path.
pub fn walk(src: &dyn NodeSource, root: NodeId) -> Result<Vec<(EntryPath, Entry)>, crate::Error> {
    Ok(diff(src, None, Some(root))?
        .into_iter()
        .filter_map(|c| match c {
            Change::Added(p, e) => Some((p, e)),
            _ => None,
        })
        .collect())
}

fn child_path(dir: Option<&EntryPath>, name: &str) -> Result<EntryPath, crate::Error> {
    match dir {
        None => EntryPath::top(name),
        Some(d) => d.join(name),
    }
    .map_err(|e| crate::Error::CorruptManifest(format!("bad name {name:?} in a node: {e}")))
}

fn diff_dir(
    src: &dyn NodeSource,
    dir: Option<&EntryPath>,
    a: Option<NodeId>,
    b: Option<NodeId>,
    out: &mut Vec<Change>,
) -> Result<(), crate::Error> {
    if a == b {
        return Ok(());
    }
    let na = a.map(|id| src.node(&id)).transpose()?.unwrap_or_default();
    let nb = b.map(|id| src.node(&id)).transpose()?.unwrap_or_default();
    let (mut i, mut j) = (0, 0);
    while i < na.entries.len() || j < nb.entries.len() {
        let ea = na.entries.get(i);
        let eb = nb.entries.get(j);
        let ord = match (ea, eb) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match (ord, ea, eb) {
            (std::cmp::Ordering::Less, Some(x), _) => {
                let p = child_path(dir, &x.name)?;
                diff_dir(src, Some(&p), x.tree, None, out)?;
                out.push(Change::Removed(p, x.entry.clone()));
                i += 1;
            }
            (std::cmp::Ordering::Greater, _, Some(y)) => {
                let p = child_path(dir, &y.name)?;
                out.push(Change::Added(p.clone(), y.entry.clone()));
                diff_dir(src, Some(&p), None, y.tree, out)?;
                j += 1;
            }
            (_, Some(x), Some(y)) => {
                let p = child_path(dir, &x.name)?;
                if x.entry.is_dir() && y.entry.is_dir() {
                    if x.entry != y.entry {
                        out.push(Change::Changed(p.clone(), x.entry.clone(), y.entry.clone()));
                    }
                    diff_dir(src, Some(&p), x.tree, y.tree, out)?;
                } else if x.entry.is_dir() || y.entry.is_dir() {
                    // A change of type: everything below the old directory goes.
                    diff_dir(src, Some(&p), x.tree, None, out)?;
                    diff_dir(src, Some(&p), None, y.tree, out)?;
                    out.push(Change::Changed(p, x.entry.clone(), y.entry.clone()));
                } else if x.entry != y.entry {
                    out.push(Change::Changed(p, x.entry.clone(), y.entry.clone()));
                }
                i += 1;
                j += 1;
            }
            _ => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> EntryPath {
        EntryPath::parse(s).unwrap()
    }
    fn dir() -> Entry {
        Entry::Dir {
            mode: None,
            uid: None,
            gid: None,
            xattrs: Default::default(),
        }
    }
    fn file(c: &str) -> Entry {
        Entry::File {
            hash: Hash::of(c.as_bytes()),
            size: c.len() as u64,
            mode: 0o644,
            uid: None,
            gid: None,
            secret: false,
            xattrs: Default::default(),
            link: None,
        }
    }

    #[test]
    fn entries_round_trip_and_stray_fields_are_refused() {
        let all = [
            file("a"),
            Entry::File {
                hash: Hash::of(b"s"),
                size: 1,
                mode: 0o600,
                uid: Some(0),
                gid: Some(5),
                secret: true,
                xattrs: Default::default(),
                link: None,
            },
            dir(),
            Entry::Dir {
                mode: Some(0o750),
                uid: Some(1),
                gid: None,
                xattrs: Default::default(),
            },
            Entry::Symlink {
                target: "/x".into(),
                uid: None,
                gid: None,
            },
            Entry::Symlink {
                target: "/y".into(),
                uid: Some(3),
                gid: Some(4),
            },
        ];
        for e in all {
            let text = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), e, "{text}");
        }
        let h = Hash::of(b"a").to_hex();
        for bad in [
            format!(r#"{{"type":"file","hash":"{h}","size":1,"mode":420,"target":"x"}}"#),
            format!(r#"{{"type":"file","hash":"{h}","mode":420}}"#),
            format!(r#"{{"type":"dir","hash":"{h}"}}"#),
            r#"{"type":"dir","secret":true}"#.to_owned(),
            r#"{"type":"symlink","target":"x","mode":420}"#.to_owned(),
            r#"{"type":"symlink"}"#.to_owned(),
            r#"{"type":"dir","colour":"red"}"#.to_owned(),
            r#"{"type":"socket"}"#.to_owned(),
        ] {
            assert!(serde_json::from_str::<Entry>(&bad).is_err(), "{bad}");
        }
    }

    fn tree(entries: &[(&str, Entry)]) -> (NodeId, BTreeMap<NodeId, Node>) {
        let m: BTreeMap<EntryPath, Entry> =
            entries.iter().map(|(k, v)| (p(k), v.clone())).collect();
        let mut nodes = BTreeMap::new();
        let root = build_tree::<_, crate::Error>(&m, &Entry::clone, &mut |id, b| {
            nodes.insert(id, Node::decode(&b).unwrap());
            Ok(())
        })
        .unwrap();
        (root, nodes)
    }

    #[test]
    fn walk_returns_every_entry_sorted() {
        let entries = [
            ("/a", dir()),
            ("/a-b", file("x")),
            ("/a/b", file("y")),
            (
                "/c",
                Entry::Symlink {
                    target: "a".into(),
                    uid: None,
                    gid: None,
                },
            ),
        ];
        let (root, nodes) = tree(&entries);
        let got: Vec<String> = walk(&nodes, root)
            .unwrap()
            .into_iter()
            .map(|(p, _)| p.to_string())
            .collect();
        assert_eq!(got, ["/a", "/a-b", "/a/b", "/c"]);
    }

    #[test]
    fn diff_reports_exactly_the_changes() {
        let (ra, mut na) = tree(&[
            ("/a", dir()),
            ("/a/x", file("1")),
            ("/a/y", file("2")),
            ("/b", dir()),
            ("/b/z", file("3")),
        ]);
        let (rb, nb) = tree(&[
            ("/a", dir()),
            ("/a/x", file("1")),
            ("/a/y", file("22")),
            ("/b", file("now a file")),
        ]);
        na.extend(nb);
        let d = diff(&na, Some(ra), Some(rb)).unwrap();
        let shown: Vec<String> = d
            .iter()
            .map(|c| match c {
                Change::Added(p, _) => format!("+{p}"),
                Change::Removed(p, _) => format!("-{p}"),
                Change::Changed(p, _, _) => format!("~{p}"),
            })
            .collect();
        assert_eq!(shown, ["~/a/y", "~/b", "-/b/z"]);
    }

    #[test]
    fn diff_skips_equal_subtrees_without_reading_them() {
        let (ra, mut na) = tree(&[("/big", dir()), ("/big/f", file("1")), ("/s", file("a"))]);
        let (rb, nb) = tree(&[("/big", dir()), ("/big/f", file("1")), ("/s", file("b"))]);
        na.extend(nb);
        // Drop the shared subtree's node: diff must not need it.
        let big = na[&ra].entries[0].tree.unwrap();
        na.remove(&big);
        let d = diff(&na, Some(ra), Some(rb)).unwrap();
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn ids_are_content_addressed() {
        let (r1, _) = tree(&[("/a", file("x"))]);
        let (r2, _) = tree(&[("/a", file("x"))]);
        let (r3, _) = tree(&[("/a", file("y"))]);
        assert_eq!(r1, r2);
        assert_ne!(r1, r3);
    }
}
