//! The build's walk: one directory at a time, bottom-up. A directory is
//! listed (its tree's source, merged with what the configuration declares
//! there), its files are hashed or found in the stat index, its node is
//! encoded and handed to the database, and only the node's id goes up to
//! its parent: a build holds the directories on the way down from the root
//! (with their listings), not an entry per file.
//!
//! Subdirectories, and the files of a directory, are done in parallel.
//! Whatever the threads do, the result and the error reported are the
//! same: entries are put in name order, and of several errors the first
//! in path order is kept.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;

use rayon::prelude::*;
use sysgen_schema::EntryPath;
use sysgen_store::{Area, Batch, Store};

use super::index::StatIndex;
use super::index::spill::Spill;
use super::tree::{ListedFile, ListedKind, Walk};
use crate::db::{CacheRow, DirRecord, Put};
use crate::manifest::{Entry, NodeBuilder, NodeId};
use crate::rootfs::Xattrs;
use crate::{Error, Progress};

mod clean;
mod decl;
mod links;

pub(super) use decl::{Decl, DeclNode, decl_tree};

pub(super) use links::Held;
use links::HeldItem;

/// What the walk shares between its threads.
pub(super) struct Cx<'a> {
    pub(super) walks: Vec<Walk<'a>>,
    pub(super) cache: &'a StatIndex,
    pub(super) store: &'a Store,
    pub(super) batch: &'a Batch<'a>,
    pub(super) progress: &'a dyn Progress,
    /// The state directory's path inside the root, if it is inside.
    pub(super) reserved: Option<EntryPath>,
    /// Where each node goes, as soon as it is made (to the database),
    /// and each directory's record (clean.rs).
    pub(super) sink: SyncSender<Put>,
    /// The records of source directories' nodes of earlier builds, by
    /// source path (`Db::dir_records`).
    pub(super) records: &'a HashMap<Vec<u8>, DirRecord>,
    /// Names of the trees' files with more than one name, by tree and
    /// inode: those named more than once in a tree become hard links of
    /// the first name in path order.
    pub(super) linked: Mutex<HashMap<(u32, u64, u64), Vec<EntryPath>>>,
    /// Where the stat index's records of files hashed again go: a run per
    /// directory.
    pub(super) spill: &'a Spill,
    /// Trees' files seen, and those found in the stat index (with the
    /// declared ones).
    pub(super) files: AtomicU64,
    pub(super) cached: AtomicU64,
}

/// A directory, done.
pub(super) struct Done {
    pub(super) child: Child,
    /// Entries below it, and the bytes of their files.
    pub(super) entries: u64,
    pub(super) bytes: u64,
}

/// A directory's node: made, or held until the hard links of its tree
/// are known (it, or a directory below, has a file with several names).
pub(super) enum Child {
    Node(NodeId),
    Held(Box<Held>),
}

/// A tree's file, hashed or found in the stat index.
struct FileDone {
    entry: Entry,
    /// The stat index's new record, if it was hashed.
    row: Option<CacheRow>,
    /// Its hash is its stat's: found in the stat index, or hashed without
    /// changing while it was read.
    trusted: bool,
}

/// A subdirectory to build: its place, path, entry, source (the tree and
/// its directory) and the declarations below it.
type SubDir = (
    usize,
    EntryPath,
    Entry,
    Option<(u32, PathBuf)>,
    BTreeMap<String, DeclNode>,
);

/// A name's entry once done, with its directory's result if it is one.
type Slot = Result<(Entry, Option<Done>), Error>;

/// One name of a directory being built.
enum Item {
    /// A tree's file, to hash.
    File(u32, PathBuf, ListedFile),
    Leaf(Entry),
    Dir {
        path: EntryPath,
        entry: Entry,
        /// The tree and its source directory.
        src: Option<(u32, PathBuf)>,
        decl: BTreeMap<String, DeclNode>,
    },
    Failed(Error),
}

/// How two siblings sort in path order, for what is below them: a
/// directory's entries sort as its name and a `/` (`a-b` before `a/c`).
fn path_order(a: (&str, bool), b: (&str, bool)) -> std::cmp::Ordering {
    let key =
        |(name, dir): (&str, bool)| name.bytes().chain(dir.then_some(b'/')).collect::<Vec<u8>>();
    key(a).cmp(&key(b))
}

impl Cx<'_> {
    /// Builds the directory at `path` (`None`: the root) from its tree's
    /// source directory `src`, if any, and the declarations below it.
    pub(super) fn dir(
        &self,
        path: Option<&EntryPath>,
        src: Option<(u32, &Path)>,
        decl: BTreeMap<String, DeclNode>,
    ) -> Result<Done, Error> {
        let declared = !decl.is_empty();
        let items = self.items(path, src, decl)?;
        self.progress.grow(
            items
                .iter()
                .filter(|(_, i)| matches!(i, Item::File(..)))
                .count() as u64,
        );
        // A tree's directory with nothing declared in it: the node of an
        // earlier build may be its own (clean.rs).
        let listing = match (src, path, declared) {
            (Some((_, s)), Some(_), false) => {
                clean::listing(&items, self.cache).map(|l| (s.as_os_str().as_bytes(), l))
            }
            _ => None,
        };
        let record = listing.as_ref().and_then(|(s, l)| {
            self.records
                .get(*s)
                .filter(|r| r.listing == l.hash)
                .copied()
        });
        // Files and subdirectories, in parallel; each keeps its place.
        let mut slots: Vec<Option<Slot>> = Vec::with_capacity(items.len());
        let mut names = Vec::with_capacity(items.len());
        let mut linked = Vec::with_capacity(items.len());
        let mut is_dir = Vec::with_capacity(items.len());
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for (i, (name, item)) in items.into_iter().enumerate() {
            linked.push(match &item {
                Item::File(t, _, f) if f.linked => Some(*t),
                _ => None,
            });
            names.push(name);
            is_dir.push(matches!(item, Item::Dir { .. }));
            match item {
                Item::File(t, src, f) => {
                    files.push((i, t, src, f));
                    slots.push(None);
                }
                Item::Dir {
                    path,
                    entry,
                    src,
                    decl,
                } => {
                    dirs.push((i, path, entry, src, decl));
                    slots.push(None);
                }
                Item::Leaf(e) => slots.push(Some(Ok((e, None)))),
                Item::Failed(e) => slots.push(Some(Err(e))),
            }
        }
        let do_files = |files: Vec<(usize, u32, PathBuf, ListedFile)>| {
            files
                .into_par_iter()
                .map(|(i, t, src, f)| {
                    let r = self.file(path, &names[i], t, &src, f);
                    self.progress.advance(1);
                    (i, r)
                })
                .collect::<Vec<_>>()
        };
        let do_dirs = |dirs: Vec<SubDir>| {
            dirs.into_par_iter()
                .map(|(i, p, entry, src, decl)| {
                    let src = src.as_ref().map(|(t, s)| (*t, s.as_path()));
                    (i, self.dir(Some(&p), src, decl).map(|d| (entry, Some(d))))
                })
                .collect::<Vec<_>>()
        };
        let (files, dirs) = match (&listing, record) {
            (Some((_, l)), Some(rec)) => {
                // The listing is as recorded: the subdirectories first, and
                // if their nodes are as recorded too, the recorded node.
                let dirs = do_dirs(dirs);
                let mut below = (0, 0);
                let children: Option<Vec<NodeId>> = dirs
                    .iter()
                    .map(|(_, r)| match r {
                        Ok((_, Some(d))) => match d.child {
                            Child::Node(id) => {
                                below = (below.0 + d.entries, below.1 + d.bytes);
                                Some(id)
                            }
                            Child::Held(_) => None,
                        },
                        _ => None,
                    })
                    .collect();
                if children.is_some_and(|c| clean::made(&l.hash, &c) == rec.made) {
                    self.files.fetch_add(l.files, Ordering::Relaxed);
                    self.cached.fetch_add(l.files, Ordering::Relaxed);
                    self.progress.advance(l.files);
                    return Ok(Done {
                        child: Child::Node(rec.node),
                        entries: names.len() as u64 + below.0,
                        bytes: l.bytes + below.1,
                    });
                }
                (do_files(files), dirs)
            }
            _ => rayon::join(|| do_files(files), || do_dirs(dirs)),
        };
        // The records of the files hashed again, as a run under this
        // directory's source path (that is the key of each: see
        // `ingest::hash_source`).
        if let Some((_, src)) = src {
            let src = src.as_os_str().as_bytes();
            let slash: &[u8] = if src.ends_with(b"/") { b"" } else { b"/" };
            let rows = files
                .iter()
                .filter_map(|(i, r)| match r {
                    Ok(got) => got.row.map(|row| (names[*i].as_bytes(), row)),
                    _ => None,
                })
                .collect();
            self.spill.run(&[src, slash], rows)?;
        }
        // Whether every file's hash stands for its stat (clean.rs).
        let trusted = files
            .iter()
            .all(|(_, r)| r.as_ref().is_ok_and(|got| got.trusted));
        for (i, r) in files {
            slots[i] = Some(r.map(|got| (got.entry, None)));
        }
        for (i, r) in dirs {
            slots[i] = Some(r);
        }
        // The first error in path order, if any.
        let first_err = slots
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Some(Err(_))))
            .map(|(i, _)| i)
            .min_by(|&a, &b| path_order((&names[a], is_dir[a]), (&names[b], is_dir[b])));
        if let Some(i) = first_err {
            if let Some(Some(Err(e))) = slots.into_iter().nth(i) {
                return Err(e);
            }
            return Err(Error::Internal("a build's error went missing".into()));
        }
        let mut entries = 0;
        let mut bytes = 0;
        let mut done = Vec::with_capacity(slots.len());
        for slot in slots {
            let Some(Ok((entry, sub))) = slot else {
                return Err(Error::Internal("a build's entry went missing".into()));
            };
            entries += 1;
            if let Entry::File { size, .. } = &entry {
                bytes += size;
            }
            if let Some(d) = &sub {
                entries += d.entries;
                bytes += d.bytes;
            }
            done.push((entry, sub.map(|d| d.child)));
        }
        let hold = linked.iter().any(Option::is_some)
            || done.iter().any(|(_, c)| matches!(c, Some(Child::Held(_))));
        let child = if hold {
            Child::Held(Box::new(Held {
                path: path.cloned(),
                items: names
                    .into_iter()
                    .zip(done)
                    .zip(linked)
                    .map(|((name, (entry, child)), linked)| HeldItem {
                        name,
                        entry,
                        child,
                        linked,
                    })
                    .collect(),
            }))
        } else {
            let mut node = NodeBuilder::new(done.len());
            let mut children = Vec::new();
            for (name, (entry, child)) in names.iter().zip(&done) {
                let tree = match child {
                    Some(Child::Node(id)) => Some(*id),
                    _ => None,
                };
                children.extend(tree);
                node.push(name, tree, entry);
            }
            let id = self.put(node)?;
            if let Some((s, l)) = listing.filter(|(_, l)| l.settled && trusted) {
                let made = clean::made(&l.hash, &children);
                if record.is_none_or(|r| r.made != made || r.node != id) {
                    self.send(Put::Dir(
                        s.to_vec(),
                        DirRecord {
                            listing: l.hash,
                            made,
                            node: id,
                        },
                    ))?;
                }
            }
            Child::Node(id)
        };
        Ok(Done {
            child,
            entries,
            bytes,
        })
    }

    fn put(&self, node: NodeBuilder) -> Result<NodeId, Error> {
        let (id, bytes) = node.finish();
        self.send(Put::Node(id, bytes))?;
        Ok(id)
    }

    fn send(&self, put: Put) -> Result<(), Error> {
        self.sink
            .send(put)
            .map_err(|_| Error::Internal("the database stopped taking nodes".into()))
    }

    /// The names of a directory in name order: its tree's listing merged
    /// with the declarations there.
    fn items(
        &self,
        path: Option<&EntryPath>,
        src: Option<(u32, &Path)>,
        decl: BTreeMap<String, DeclNode>,
    ) -> Result<Vec<(String, Item)>, Error> {
        let (listed, walk) = match (src, path) {
            (Some((t, s)), Some(p)) => {
                let walk = self.walk(t)?;
                (walk.list(s, p)?, Some((walk, s)))
            }
            _ => (Vec::new(), None),
        };
        // Only a directory the state directory is below needs a look.
        let reserved = self
            .reserved
            .as_ref()
            .filter(|r| path.is_none_or(|p| r.is_under(p)));
        let mut out = Vec::with_capacity(listed.len() + decl.len());
        let mut decl = decl.into_iter().peekable();
        for l in listed {
            while let Some((name, _)) = decl.peek()
                && *name < l.name
            {
                if let Some((name, d)) = decl.next() {
                    out.push((name, self.declared(d)?));
                }
            }
            let (walk, src_dir) =
                walk.ok_or_else(|| Error::Internal("a listing without a tree".into()))?;
            let here = decl.next_if(|(name, _)| *name == l.name).map(|(_, d)| d);
            let child = || {
                let base = path.map_or("", |p| p.as_str());
                EntryPath::parse(&format!("{base}/{}", l.name)).map_err(|e| {
                    Error::Invalid(format!(
                        "{}: {}: {e}",
                        walk.what,
                        src_dir.join(&l.name).display()
                    ))
                })
            };
            if let Some(r) = reserved {
                let p = child()?;
                if *r == p || (r.is_under(&p) && !matches!(l.kind, ListedKind::Dir(_))) {
                    return Err(in_state_dir(&p, r));
                }
            }
            let item = match (l.kind, here) {
                (ListedKind::Dir(entry), None) => Item::Dir {
                    path: child()?,
                    entry,
                    src: Some((walk.index, src_dir.join(&l.name))),
                    decl: BTreeMap::new(),
                },
                (ListedKind::Dir(entry), Some(d)) => match d.decl {
                    Decl::Parent => Item::Dir {
                        path: d.path,
                        entry,
                        src: Some((walk.index, src_dir.join(&l.name))),
                        decl: d.children,
                    },
                    Decl::Over(over, _) => Item::Dir {
                        path: d.path,
                        entry: over,
                        src: Some((walk.index, src_dir.join(&l.name))),
                        decl: d.children,
                    },
                    _ => return Err(clash(&walk.what, &d.path)),
                },
                (kind, Some(d)) => match d.decl {
                    // A kind's directory replaces the tree's file.
                    Decl::Over(over, _) => Item::Dir {
                        path: d.path,
                        entry: over,
                        src: None,
                        decl: d.children,
                    },
                    Decl::Parent => {
                        return Err(Error::Invalid(format!(
                            "{}: the tree provides {} as a {}, below which the configuration declares paths; declare them elsewhere",
                            walk.what,
                            d.path,
                            if matches!(kind, ListedKind::File(_)) {
                                "file"
                            } else {
                                "symlink"
                            }
                        )));
                    }
                    _ => return Err(clash(&walk.what, &d.path)),
                },
                (ListedKind::Symlink(e), None) => Item::Leaf(e),
                (ListedKind::File(f), None) => Item::File(walk.index, src_dir.join(&l.name), f),
            };
            out.push((l.name, item));
        }
        for (name, d) in decl {
            out.push((name, self.declared(d)?));
        }
        Ok(out)
    }

    fn walk(&self, t: u32) -> Result<&Walk<'_>, Error> {
        self.walks
            .get(t as usize)
            .ok_or_else(|| Error::Internal(format!("no tree number {t}")))
    }

    /// A declaration with no tree's entry at its path.
    fn declared(&self, d: DeclNode) -> Result<Item, Error> {
        let dir = |entry, src: Option<u32>| -> Result<Item, Error> {
            Ok(Item::Dir {
                entry,
                src: match src {
                    Some(t) => Some((t, self.walk(t)?.tree.source.clone())),
                    None => None,
                },
                path: d.path.clone(),
                decl: BTreeMap::new(),
            })
        };
        let item = match d.decl {
            Decl::Ready(e @ Entry::Dir { .. }) => dir(e, None)?,
            Decl::Ready(e) => Item::Leaf(e),
            Decl::Failed(e) => Item::Failed(e),
            Decl::Tree(t) => dir(self.walk(t)?.top()?, Some(t))?,
            Decl::Parent => dir(
                Entry::Dir {
                    mode: None,
                    uid: None,
                    gid: None,
                    xattrs: Xattrs::default(),
                },
                None,
            )?,
            Decl::Over(e, t) => dir(e, t)?,
        };
        Ok(match item {
            Item::Dir {
                path, entry, src, ..
            } => Item::Dir {
                path,
                entry,
                src,
                decl: d.children,
            },
            other => other,
        })
    }

    /// Hashes a tree's file, or takes its hash from the stat index; with
    /// the stat index's new record if it was hashed.
    fn file(
        &self,
        dir: Option<&EntryPath>,
        name: &str,
        tree: u32,
        src: &Path,
        f: ListedFile,
    ) -> Result<FileDone, Error> {
        let path = || {
            let base = dir.map_or("", |p| p.as_str());
            EntryPath::parse(&format!("{base}/{name}"))
                .map_err(|e| Error::Internal(format!("{}: {e}", src.display())))
        };
        let got = super::hash::hash_source(
            src,
            f.stat,
            Area::Public,
            self.cache,
            self.store,
            self.batch,
        )?;
        self.files.fetch_add(1, Ordering::Relaxed);
        if got.cached {
            self.cached.fetch_add(1, Ordering::Relaxed);
        }
        let row = got
            .record
            .then(|| super::hash::cache_row(&f.stat, got.hash));
        if f.linked {
            lock(&self.linked)
                .entry((tree, f.stat.dev, f.stat.ino))
                .or_default()
                .push(path()?);
        }
        let entry = Entry::File {
            hash: got.hash,
            size: got.size,
            mode: f.mode,
            uid: Some(f.uid),
            gid: Some(f.gid),
            secret: false,
            xattrs: f.xattrs,
            link: None,
        };
        Ok(FileDone {
            entry,
            row,
            trusted: got.cached || got.record,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn clash(what: &str, p: &EntryPath) -> Error {
    Error::Invalid(format!(
        "{what}: the tree provides {p}, which the configuration also declares; declare it in one place only"
    ))
}

/// As `State::refuse_in_state_dir` says it of a declared path.
fn in_state_dir(p: &EntryPath, r: &EntryPath) -> Error {
    Error::Invalid(format!(
        "{p}: the configuration (a declaration or a tree's content) would put this path in or over sysgen's state directory {r}; keep it out of the tree or declare it elsewhere"
    ))
}
