//! What the configuration declares below the root, apart from the trees'
//! content: a small tree of names that the walk merges into the listings
//! where its paths fall.

use std::collections::BTreeMap;

use sysgen_schema::EntryPath;

use crate::Error;
use crate::manifest::Entry;

/// What the configuration puts at a path, apart from a tree's content.
pub(crate) enum Decl {
    /// A declared directory or symlink, or a declared file once hashed.
    Ready(Entry),
    /// A declared file whose hashing failed: reported when the walk gets
    /// there, so that the error reported is the first in path order.
    Failed(Error),
    /// The top of tree number `.0`.
    Tree(u32),
    /// A parent of declared paths, which sysgen only makes sure exists:
    /// a tree that has a directory there gives its own.
    Parent,
    /// Another kind's directory: it replaces what a declaration or a tree
    /// gives at its path (a tree's content below it stays).
    Over(Entry, Option<u32>),
}

/// The declarations below the root, as a tree of names.
pub(crate) struct DeclNode {
    pub(super) path: EntryPath,
    pub(super) decl: Decl,
    pub(super) children: BTreeMap<String, DeclNode>,
}

/// Turns the declarations (every parent present, see `ingest::build_in`)
/// into a tree of names.
pub(crate) fn decl_tree(
    flat: BTreeMap<EntryPath, Decl>,
) -> Result<BTreeMap<String, DeclNode>, Error> {
    let mut top: BTreeMap<String, DeclNode> = BTreeMap::new();
    for (p, decl) in flat {
        // A parent sorts before its children: it is there already.
        let mut level = &mut top;
        let mut names = p.components().peekable();
        while let Some(name) = names.next() {
            if names.peek().is_none() {
                level.insert(
                    name.to_owned(),
                    DeclNode {
                        path: p.clone(),
                        decl,
                        children: BTreeMap::new(),
                    },
                );
                break;
            }
            level = match level.get_mut(name) {
                Some(n) => &mut n.children,
                None => return Err(Error::Internal(format!("{p}: no parent declared"))),
            };
        }
    }
    Ok(top)
}
