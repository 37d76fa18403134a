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

pub mod binary;
mod diff;
mod flat;

pub use diff::{Change, diff, diff_each, walk, walk_each};

/// The manifest format: 2 since nodes are binary ([`binary`]); 1 had
/// JSON nodes (converted by the database's migration 9).
pub const FORMAT: u32 = 2;

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
    /// The canonical encoding ([`binary`]). Its BLAKE3 is the node id.
    /// Infallible, but kept a `Result` for its callers: nothing that is
    /// hashed may ever fall back to a default.
    pub fn encode(&self) -> Result<Vec<u8>, crate::Error> {
        Ok(binary::encode(self))
    }

    /// Decodes a node: the binary encoding, or format 1's JSON (what
    /// migration 9 converts, and what an old export may hold).
    pub fn decode(bytes: &[u8]) -> Result<Node, NodeDecodeError> {
        if bytes.starts_with(binary::MAGIC) {
            binary::decode(bytes).map_err(NodeDecodeError)
        } else {
            Node::decode_json(bytes)
        }
    }

    /// Format 1's JSON encoding only.
    pub fn decode_json(bytes: &[u8]) -> Result<Node, NodeDecodeError> {
        serde_json::from_slice(bytes).map_err(|e| NodeDecodeError(e.to_string()))
    }

    pub fn id_of(encoded: &[u8]) -> NodeId {
        NodeId(Hash::of(encoded))
    }
}

/// Why bytes are not a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDecodeError(pub String);

impl fmt::Display for NodeDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NodeDecodeError {}

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

    /// The node's binary encoding, checked against its id: what
    /// [`diff`] reads, so that it decodes only the entries that differ.
    fn raw(&self, id: &NodeId) -> Result<Vec<u8>, crate::Error> {
        self.node(id)?.encode()
    }
}

impl NodeSource for BTreeMap<NodeId, Node> {
    fn node(&self, id: &NodeId) -> Result<Node, crate::Error> {
        self.get(id).cloned().ok_or(crate::Error::MissingNode(id.0))
    }
}

/// One directory's node, written entry by entry in name order (what the
/// build's walk makes, one directory at a time), without a [`NodeEntry`]
/// per name.
pub(crate) struct NodeBuilder(binary::NodeWriter);

impl NodeBuilder {
    /// A node of exactly `count` entries.
    pub(crate) fn new(count: usize) -> NodeBuilder {
        NodeBuilder(binary::NodeWriter::new(count))
    }

    pub(crate) fn push(&mut self, name: &str, tree: Option<NodeId>, entry: &Entry) {
        self.0.push(name, tree, entry);
    }

    /// The node's id and bytes.
    pub(crate) fn finish(self) -> (NodeId, Vec<u8>) {
        let bytes = self.0.finish();
        (Node::id_of(&bytes), bytes)
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
        let kids = self.children.remove(dir).unwrap_or_default();
        let mut node = binary::NodeWriter::new(kids.len());
        // Siblings share their parent's prefix, so path order is name order.
        debug_assert!(
            kids.windows(2)
                .all(|w| w[0].0.file_name() < w[1].0.file_name())
        );
        for (p, e) in kids {
            let entry = (self.entry)(e);
            let tree = if entry.is_dir() {
                Some(self.node_for(p.as_str())?)
            } else {
                None
            };
            node.push(p.file_name(), tree, &entry);
        }
        let bytes = node.finish();
        let id = Node::id_of(&bytes);
        if self.seen.insert(id) {
            (self.sink)(id, bytes)?;
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests;
