//! Hard links: a directory with a file of several names (or with such a
//! directory below it) is held, with its entries, until the whole walk has
//! seen every name; the first name in path order is then the file and the
//! others its links, and the held nodes are made.

use std::collections::HashMap;

use sysgen_schema::EntryPath;

use super::{Child, Cx, lock};
use crate::Error;
use crate::manifest::{Entry, NodeBuilder, NodeId};

pub(crate) struct Held {
    /// `None` for the root.
    pub(super) path: Option<EntryPath>,
    pub(super) items: Vec<HeldItem>,
}

pub(super) struct HeldItem {
    pub(super) name: String,
    pub(super) entry: Entry,
    pub(super) child: Option<Child>,
    /// A tree's file with several names: `link` is set at the end.
    pub(super) linked: Option<u32>,
}

impl Cx<'_> {
    /// Makes the nodes held for hard links, now that every name is known;
    /// returns the root's id.
    pub(crate) fn finish(&self, root: Child) -> Result<NodeId, Error> {
        let mut first: HashMap<EntryPath, EntryPath> = HashMap::new();
        for mut names in std::mem::take(&mut *lock(&self.linked)).into_values() {
            if names.len() > 1 {
                names.sort();
                let mut names = names.into_iter();
                if let Some(head) = names.next() {
                    for p in names {
                        first.insert(p, head.clone());
                    }
                }
            }
        }
        self.resolve(root, &first)
    }

    fn resolve(&self, c: Child, first: &HashMap<EntryPath, EntryPath>) -> Result<NodeId, Error> {
        let held = match c {
            Child::Node(id) => return Ok(id),
            Child::Held(h) => h,
        };
        let mut node = NodeBuilder::new(held.items.len());
        for mut it in held.items {
            let tree = match it.child {
                Some(c) => Some(self.resolve(c, first)?),
                None => None,
            };
            if it.linked.is_some()
                && let Entry::File { link, .. } = &mut it.entry
            {
                let base = held.path.as_ref().map_or("", |p| p.as_str());
                let p = EntryPath::parse(&format!("{base}/{}", it.name))
                    .map_err(|e| Error::Internal(format!("{base}/{}: {e}", it.name)))?;
                *link = first.get(&p).cloned();
            }
            node.push(&it.name, tree, &it.entry);
        }
        self.put(node)
    }
}
