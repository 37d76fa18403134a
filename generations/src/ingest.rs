//! Build: realize a `HostSpec` into the store and record its manifest. The
//! root is only read (its `/etc/passwd` and `/etc/group`, to resolve owner
//! names); nothing on it changes.
//!
//! Sources are hashed in parallel. A stat index keyed by source path
//! (device, inode, size, mtime, ctime; `ingest/index.rs`) skips rehashing
//! files that did not change since the last build, as git's index does,
//! with git's rule for files changed in the same second as the index.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use rayon::prelude::*;
use sysgen_schema::{EntryPath, HostSpec, Principal};
use sysgen_store::{Area, Hash};

use crate::db::{CacheRow, ManifestInfo};
use crate::kind::BuildCx;
use crate::kinds;
use crate::manifest::{Entry, GenerationId, Manifest, build_tree};
use crate::produce::Produced;
use crate::rootfs::Xattrs;
use crate::sections::Sections;
use crate::{Error, Progress, State, io_err};

mod exclude;
mod index;
mod tree;

use index::StatIndex;

pub struct BuildOptions<'a> {
    pub now: i64,
    pub progress: &'a dyn Progress,
    /// The proxy for downloads (`files.<path>.url`), from the binary.
    pub proxy: Option<crate::download::Proxy>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildOutcome {
    pub id: GenerationId,
    /// The generation number, when this content was switched to before.
    pub number: Option<u64>,
    pub entries: u64,
    pub bytes: u64,
    pub files_hashed: u64,
    pub files_cached: u64,
    pub objects_written: u64,
}

/// Where a file's bytes come from, before hashing.
enum Src {
    Inline(Vec<u8>),
    /// A declared file on the build host.
    Path(PathBuf),
    /// The file of tree number `.0` (in `spec.trees` order) at the entry's
    /// path below the tree's top. Its source path is made again when it is
    /// read: kept for each of 100k files, those paths took more memory than
    /// anything else the build held.
    Tree(u32),
    /// Already in the store, hash and size set (a download).
    Stored,
}

/// What identifies a file's content on the build host, for the stat cache.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

struct PendingFile {
    src: Src,
    /// The source's stat: taken by the tree walk (so it is not taken twice),
    /// or else by hashing.
    stat: Option<Stat>,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
    secret: bool,
    /// Boxed, as `link`: most files have neither, and a million-file build
    /// holds a `PendingFile` per file (24 bytes each inline, 8 boxed).
    xattrs: Option<Box<Xattrs>>,
    /// A tree's hard link: the first name of the same file.
    link: Option<Box<EntryPath>>,
    /// Set by hashing, in place (no second map of 100k entries).
    hash: Hash,
    size: u64,
    /// Whether the stat cache may record `stat` for `hash`: the file did not
    /// change while it was read.
    cache: bool,
}

impl PendingFile {
    fn new(src: Src, stat: Option<Stat>, mode: u32) -> PendingFile {
        PendingFile {
            src,
            stat,
            mode,
            uid: None,
            gid: None,
            secret: false,
            xattrs: None,
            link: None,
            hash: Hash::from_bytes([0; 32]),
            size: 0,
            cache: false,
        }
    }

    /// The entry, once hashed.
    fn entry(&self) -> Entry {
        Entry::File {
            hash: self.hash,
            size: self.size,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            secret: self.secret,
            xattrs: self.xattrs.as_deref().cloned().unwrap_or_default(),
            link: self.link.as_deref().cloned(),
        }
    }
}

enum Pending {
    File(PendingFile),
    Ready(Entry),
}

impl Pending {
    fn entry(&self) -> Entry {
        match self {
            Pending::File(f) => f.entry(),
            Pending::Ready(e) => e.clone(),
        }
    }
}

/// Names to ids, from the target root's `/etc/passwd` or `/etc/group`.
struct Ids {
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
}

impl Ids {
    fn read(state: &State) -> Result<Ids, Error> {
        Ok(Ids {
            users: read_id_file(state, "/etc/passwd")?,
            groups: read_id_file(state, "/etc/group")?,
        })
    }

    fn resolve(
        &self,
        who: &Option<Principal>,
        group: bool,
        what: &str,
    ) -> Result<Option<u32>, Error> {
        let (map, file, kind) = if group {
            (&self.groups, "/etc/group", "group")
        } else {
            (&self.users, "/etc/passwd", "user")
        };
        match who {
            None => Ok(None),
            Some(Principal::Id(n)) => Ok(Some(*n)),
            Some(Principal::Name(name)) => map.get(name).copied().map(Some).ok_or_else(|| {
                Error::Invalid(format!(
                    "{what}: {kind} {name:?} does not exist in the target root's {file}; create it first or give a number"
                ))
            }),
        }
    }
}

fn read_id_file(state: &State, path: &str) -> Result<HashMap<String, u32>, Error> {
    let p = EntryPath::parse(path).map_err(|e| Error::Internal(format!("{path}: {e}")))?;
    let mut text = String::new();
    match state.root.inspect(&p)? {
        crate::rootfs::Live::File(_) => {
            state
                .root
                .open_file(&p)?
                .read_to_string(&mut text)
                .map_err(io_err(state.root.display(&p)))?;
        }
        _ => return Ok(HashMap::new()),
    }
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse().ok()?;
            Some((name.to_owned(), id))
        })
        .collect())
}

/// Builds `spec` into the store and records its manifest.
pub fn build(
    state: &mut State,
    spec: &HostSpec,
    opts: &BuildOptions<'_>,
) -> Result<BuildOutcome, Error> {
    let built = build_in(state, spec, opts);
    crate::memory::give_back_freed_memory();
    built
}

fn build_in(
    state: &mut State,
    spec: &HostSpec,
    opts: &BuildOptions<'_>,
) -> Result<BuildOutcome, Error> {
    let mut ids = Ids::read(state)?;
    // Accounts declared in this configuration get their ids first, so
    // files may be owned by them (the users kind creates them before).
    let accounts = crate::users::build(state, spec)?;
    let (uids, gids) = crate::users::declared_ids(&accounts);
    ids.users.extend(uids);
    ids.groups.extend(gids);
    let mut pending: BTreeMap<EntryPath, Pending> = BTreeMap::new();

    let mut made = crate::produce::Producer::new(state, spec, opts)?;
    for (p, f) in &spec.files {
        let what = format!("{}: files.{p}", f.declared_in.display());
        let m = made.file(state, p, f)?;
        let unset = Hash::from_bytes([0; 32]);
        let (src, hash, size) = match m.content {
            Produced::Bytes(b) => (Src::Inline(b), unset, 0),
            Produced::Path(path) => (Src::Path(path), unset, 0),
            Produced::Stored(hash, size) => (Src::Stored, hash, size),
        };
        pending.insert(
            p.clone(),
            Pending::File(PendingFile {
                uid: ids.resolve(&f.owner, false, &what)?,
                gid: ids.resolve(&f.group, true, &what)?,
                secret: m.secret,
                hash,
                size,
                xattrs: boxed(declared_xattrs(f, &what)?),
                ..PendingFile::new(src, None, m.mode)
            }),
        );
    }
    let (templates, download_rows) = made.finish();
    for (p, d) in &spec.directories {
        let what = format!("{}: directories.{p}", d.declared_in.display());
        pending.insert(
            p.clone(),
            Pending::Ready(Entry::Dir {
                mode: Some(d.mode.bits()),
                uid: ids.resolve(&d.owner, false, &what)?,
                gid: ids.resolve(&d.group, true, &what)?,
                xattrs: Xattrs::default(),
            }),
        );
    }
    for (p, s) in &spec.symlinks {
        pending.insert(
            p.clone(),
            Pending::Ready(Entry::Symlink {
                target: s.target.clone(),
                uid: None,
                gid: None,
            }),
        );
    }
    let trees: Vec<(&EntryPath, &sysgen_schema::TreeSpec)> = spec.trees.iter().collect();
    for (i, (p, t)) in trees.iter().enumerate() {
        let i = u32::try_from(i)
            .map_err(|_| Error::Invalid("more than 2^32 trees are declared".into()))?;
        let what = format!("{}: trees.{p}", t.declared_in.display());
        let over = tree::Overrides {
            uid: ids.resolve(&t.owner, false, &what)?,
            gid: ids.resolve(&t.group, true, &what)?,
        };
        tree::expand_tree(i, p, t, &over, &mut pending)?;
    }
    // Every other kind's section, validated against the root before
    // anything is hashed (an unknown package fails quickly); the
    // directories they need join the tree.
    let mut sections = Sections {
        accounts,
        ..Sections::default()
    };
    let mut dirs = Vec::new();
    let resolve = |owner: &Option<_>, group: &Option<_>, what: &str| {
        Ok((
            ids.resolve(owner, false, what)?,
            ids.resolve(group, true, what)?,
        ))
    };
    for k in kinds::all() {
        k.build(&mut BuildCx {
            state,
            spec,
            sections: &mut sections,
            dirs: &mut dirs,
            ids: &resolve,
        })?;
    }
    for (p, e) in dirs {
        pending.insert(p, Pending::Ready(e));
    }
    state.refuse_in_state_dir(&pending, |e| matches!(e, Pending::Ready(Entry::Dir { .. })))?;
    // Every ancestor of a declared path is a directory sysgen makes sure
    // exists. Only the missing ones are collected (not a copy of every
    // path), and a walk up stops at the first ancestor already known: its
    // own ancestors are, or will be, seen from it.
    let mut missing: BTreeSet<EntryPath> = BTreeSet::new();
    for p in pending.keys() {
        let mut up = p.parent();
        while let Some(a) = up {
            if pending.contains_key(&a) || missing.contains(&a) {
                break;
            }
            up = a.parent();
            missing.insert(a);
        }
    }
    for a in missing {
        pending.insert(
            a,
            Pending::Ready(Entry::Dir {
                mode: None,
                uid: None,
                gid: None,
                xattrs: Xattrs::default(),
            }),
        );
    }

    // Hash and store every file, in parallel, each result kept in its entry.
    let cache = StatIndex::load(&state.dir)?;
    let mut files: Vec<(&EntryPath, &mut PendingFile)> = pending
        .iter_mut()
        .filter_map(|(p, e)| match e {
            Pending::File(f) => Some((p, f)),
            Pending::Ready(_) => None,
        })
        .collect();
    opts.progress.start("hashing", files.len() as u64);
    let store = &state.store;
    let batch = store.batch();
    let cached = std::sync::atomic::AtomicU64::new(0);
    // Every file is tried; the error reported is the first in path order.
    let failed = files
        .par_iter_mut()
        .enumerate()
        .filter_map(|(i, (p, f))| {
            let r = hash_file(&trees, p, f, &cache, store, &batch, &cached);
            opts.progress.advance(1);
            r.err().map(|e| (i, e))
        })
        .min_by_key(|(i, _)| *i);
    opts.progress.finish();
    if let Some((_, e)) = failed {
        return Err(e);
    }
    let files_hashed =
        (files.len() as u64).saturating_sub(cached.load(std::sync::atomic::Ordering::Relaxed));
    // Memory grows with the number of entries: free what is done with first.
    drop(files);

    let written = batch.commit()?;
    // Objects are durable before anything refers to them.
    let bytes = pending
        .values()
        .map(|e| match e {
            Pending::File(f) => f.size,
            Pending::Ready(_) => 0,
        })
        .sum();
    let root = state
        .db
        .insert_nodes(|sink| build_tree(&pending, &Pending::entry, sink))?;
    let manifest = Manifest {
        sysgen: crate::manifest::FORMAT,
        host: spec.host.clone(),
        root,
        services: sections.services,
        packages: sections.packages,
        datasets: sections.datasets,
        templates,
        blocks: sections.blocks,
        checks: sections.checks,
        validate: sections.validate,
        accounts: sections.accounts,
    };
    let id = state.db.put_manifest(
        &manifest,
        &ManifestInfo {
            config: Some(spec.config.display().to_string()),
            entries: pending.len() as u64,
            bytes,
            built_at: opts.now,
        },
    )?;
    // Only files hashed again make new records: an unchanged build
    // writes no index at all.
    let rows: Vec<(&EntryPath, &PendingFile)> = pending
        .iter()
        .filter_map(|(p, e)| match e {
            Pending::File(f) if f.cache && f.stat.is_some() => {
                source_key(&trees, p, &f.src).map(|_| (p, f))
            }
            _ => None,
        })
        .collect();
    if !rows.is_empty() {
        let none: index::Key<'_> = [&[], &[], &[]];
        index::write(
            &state.dir,
            &cache,
            rows,
            |(p, f)| source_key(&trees, p, &f.src).unwrap_or(none),
            |(_, f)| cache_row(&f.stat.unwrap_or(NO_STAT), f.hash),
        )?;
    }
    let entries = pending.len() as u64;
    drop(cache);
    state.db.update_stat_cache(download_rows)?;
    let number = state
        .db
        .generation_of(&id)?
        .filter(|g| g.collected_at.is_none())
        .map(|g| g.number);
    Ok(BuildOutcome {
        id,
        number,
        entries,
        bytes,
        files_hashed,
        files_cached: cached.into_inner(),
        objects_written: written.objects_written,
    })
}

/// `x` boxed, unless empty (see `PendingFile::xattrs`).
fn boxed(x: Xattrs) -> Option<Box<Xattrs>> {
    (!x.is_empty()).then(|| Box::new(x))
}

/// The capability and attributes a `files` entry declares.
fn declared_xattrs(f: &sysgen_schema::FileSpec, what: &str) -> Result<Xattrs, Error> {
    let mut out: BTreeMap<String, Vec<u8>> = f
        .xattrs
        .iter()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    if let Some(text) = &f.caps {
        let v = crate::files::caps::parse(text)
            .map_err(|e| Error::Invalid(format!("{what}: caps: {e}")))?;
        out.insert(crate::rootfs::xattr::CAPABILITY.to_owned(), v);
    }
    Ok(Xattrs(out))
}

/// Hashes and stores one file, or takes its hash from the stat cache; the
/// result goes into `f`.
fn hash_file(
    trees: &[(&EntryPath, &sysgen_schema::TreeSpec)],
    p: &EntryPath,
    f: &mut PendingFile,
    cache: &StatIndex,
    store: &sysgen_store::Store,
    batch: &sysgen_store::Batch<'_>,
    cached: &std::sync::atomic::AtomicU64,
) -> Result<(), Error> {
    let area = if f.secret { Area::Secret } else { Area::Public };
    let path = match &f.src {
        Src::Stored => return Ok(()),
        Src::Inline(bytes) => {
            f.hash = batch.put_bytes(bytes, area)?;
            f.size = bytes.len() as u64;
            return Ok(());
        }
        _ => source_path(trees, p, &f.src)
            .ok_or_else(|| Error::Internal(format!("{p}: no source for this file")))?,
    };
    let stat = match f.stat {
        Some(stat) => stat,
        None => stat_of(&std::fs::metadata(&path).map_err(io_err(&path))?),
    };
    f.stat = Some(stat);
    let hit = match cache.get(path.as_os_str().as_bytes()) {
        Some(c) if same_file(&c, &stat) => store.contains(&c.hash, area)?.then_some(c),
        _ => None,
    };
    match hit {
        Some(c) => {
            cached.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            f.hash = c.hash;
            f.size = c.size;
        }
        _ => {
            let (hash, size) = batch.put_file(&path, area)?;
            f.hash = hash;
            f.size = size;
            // Cache only if the file did not change while we read it.
            if let Ok(after) = std::fs::metadata(&path) {
                let after = stat_of(&after);
                f.cache = after == stat && after.size == size;
            }
        }
    }
    Ok(())
}

/// A file's source path on the build host; `None` for inline content.
fn source_path(
    trees: &[(&EntryPath, &sysgen_schema::TreeSpec)],
    p: &EntryPath,
    src: &Src,
) -> Option<PathBuf> {
    match src {
        Src::Inline(_) | Src::Stored => None,
        Src::Path(path) => Some(path.clone()),
        Src::Tree(i) => {
            let (at, tree) = trees.get(*i as usize)?;
            let below = p.as_str().strip_prefix(at.as_str())?.strip_prefix('/')?;
            Some(tree.source.join(below))
        }
    }
}

/// [`source_path`]'s bytes in pieces (see [`index::Key`]), without
/// building the path: `source_path` is `PathBuf::join`, which puts a `/`
/// between a tree's source and the path below unless the source ends in one.
fn source_key<'a>(
    trees: &[(&'a EntryPath, &'a sysgen_schema::TreeSpec)],
    p: &'a EntryPath,
    src: &'a Src,
) -> Option<index::Key<'a>> {
    match src {
        Src::Inline(_) | Src::Stored => None,
        Src::Path(path) => Some([path.as_os_str().as_bytes(), &[], &[]]),
        Src::Tree(i) => {
            let (at, tree) = trees.get(*i as usize)?;
            let below = p.as_str().strip_prefix(at.as_str())?.strip_prefix('/')?;
            let top = tree.source.as_os_str().as_bytes();
            let slash: &[u8] = if top.ends_with(b"/") { b"" } else { b"/" };
            Some([top, slash, below.as_bytes()])
        }
    }
}

/// Never used: rows without a stat are left out before.
const NO_STAT: Stat = Stat {
    dev: 0,
    ino: 0,
    size: 0,
    mtime_ns: 0,
    ctime_ns: 0,
};

fn stat_of(md: &std::fs::Metadata) -> Stat {
    Stat {
        dev: md.dev(),
        ino: md.ino(),
        size: md.size(),
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
    }
}

fn cache_row(s: &Stat, hash: Hash) -> CacheRow {
    CacheRow {
        dev: s.dev,
        ino: s.ino,
        size: s.size,
        mtime_ns: s.mtime_ns,
        ctime_ns: s.ctime_ns,
        hash,
    }
}

fn same_file(c: &CacheRow, s: &Stat) -> bool {
    c.dev == s.dev
        && c.ino == s.ino
        && c.size == s.size
        && c.mtime_ns == s.mtime_ns
        && c.ctime_ns == s.ctime_ns
}

/// A build holds a `Pending` per entry, a first switch a `Change`: about
/// half of what each holds per file (docs/performance.md, "Memory toward
/// a million files").
#[test]
fn per_file_records_stay_small() {
    assert!(size_of::<Pending>() <= 160);
    assert!(size_of::<crate::manifest::Change>() <= 144);
}
