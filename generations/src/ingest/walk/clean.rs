//! A clean directory's node, reused (issue 14, session 11): a tree's
//! source directory that lists as it did when a build made its node, with
//! subdirectories whose nodes came out as they did then, gets that node
//! back without its files being looked up in the stat index or the store,
//! and without being encoded or handed to the database again.
//!
//! Two fingerprints make that proof (`db::DirRecord`):
//!
//! - `listing`: every name in the directory after the tree's excludes, and
//!   for each what goes into its entry as the listing gives it (mode,
//!   owner and group after the tree's overrides, the attributes the tree
//!   records, a symlink's target, a subdirectory's own metadata), and for
//!   a file its stat as the stat index keys content (device, inode, size,
//!   mtime, ctime). A file's hash is the one thing a node holds that the
//!   listing does not: the stat stands for it, as in the stat index.
//! - `made`: the listing's fingerprint and the node ids its subdirectories
//!   came out with in this build, in name order.
//!
//! Only a directory with nothing declared in it or below it by the
//! configuration (no declaration, no other kind's directory, no tree's top
//! inside) and no file of several names (a hard link's first name is
//! decided over the whole tree) has a record; any other directory is built
//! in full, every time.
//!
//! A record is made only when every file of the directory was found in
//! the stat index or hashed without changing while it was read, and was
//! last changed (mtime and ctime) before the stat index in use was written,
//! so before this build took its stats: a later change then gives the file
//! a later mtime or ctime than the one fingerprinted (the stat index's
//! racy-clean rule, applied when the record is made). Its node exists for
//! as long as the record is used: records whose node gc deleted are not
//! read (`Db::dir_records`), and a node in the database has its objects in
//! the store (gc deletes nodes before objects, builds commit objects before
//! nodes).

use sysgen_store::Hash;

use super::Item;
use crate::manifest::binary::encode_entry;
use crate::manifest::{Entry, FORMAT, NodeId};

use super::super::index::StatIndex;

/// A directory's listing, fingerprinted.
pub(super) struct Listing {
    pub(super) hash: Hash,
    /// Its files, and their bytes: the counts a reused node stands for.
    pub(super) files: u64,
    pub(super) bytes: u64,
    /// Every file was last changed before the stat index was written.
    pub(super) settled: bool,
}

/// The fingerprint of a directory's items, or `None` if the directory may
/// not be reused (something declared there, a file of several names).
pub(super) fn listing(items: &[(String, Item)], index: &StatIndex) -> Option<Listing> {
    let mut h = blake3::Hasher::new();
    h.update(b"sysgen directory listing\0");
    h.update(&FORMAT.to_le_bytes());
    let mut rec = Vec::with_capacity(128);
    let (mut files, mut bytes, mut settled) = (0u64, 0u64, true);
    for (name, item) in items {
        rec.clear();
        match item {
            Item::File(_, _, f) if !f.linked => {
                let s = &f.stat;
                rec.push(b'f');
                for v in [s.dev, s.ino, s.size, s.mtime_ns as u64, s.ctime_ns as u64] {
                    rec.extend_from_slice(&v.to_le_bytes());
                }
                // The entry as the node will have it, but for its hash.
                encode_entry(
                    &mut rec,
                    &Entry::File {
                        hash: Hash::from_bytes([0; 32]),
                        size: s.size,
                        mode: f.mode,
                        uid: Some(f.uid),
                        gid: Some(f.gid),
                        secret: false,
                        xattrs: f.xattrs.clone(),
                        link: None,
                    },
                );
                files += 1;
                bytes += s.size;
                settled &= index.settled(s.mtime_ns, s.ctime_ns);
            }
            Item::Leaf(e @ Entry::Symlink { .. }) => {
                rec.push(b'l');
                encode_entry(&mut rec, e);
            }
            Item::Dir {
                entry,
                src: Some(_),
                decl,
                ..
            } if decl.is_empty() => {
                rec.push(b'd');
                encode_entry(&mut rec, entry);
            }
            _ => return None,
        }
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&(rec.len() as u64).to_le_bytes());
        h.update(&rec);
    }
    Some(Listing {
        hash: Hash::from_bytes(*h.finalize().as_bytes()),
        files,
        bytes,
        settled,
    })
}

/// The fingerprint of a listing and its subdirectories' nodes.
pub(super) fn made(listing: &Hash, children: &[NodeId]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"sysgen directory made\0");
    h.update(listing.as_bytes());
    for c in children {
        h.update(c.0.as_bytes());
    }
    Hash::from_bytes(*h.finalize().as_bytes())
}
