//! Build: realize a `HostSpec` into the store and record its manifest. The
//! root is only read (its `/etc/passwd` and `/etc/group`, to resolve owner
//! names); nothing on it changes.
//!
//! Trees are built one directory at a time, bottom-up (`ingest/walk.rs`):
//! memory grows with the depth and the widest directory, not with the
//! number of files. Sources are hashed in parallel. A stat index keyed by source path
//! (device, inode, size, mtime, ctime; `ingest/index.rs`) skips rehashing
//! files that did not change since the last build, as git's index does,
//! with git's rule for files changed in the same second as the index.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;

use rayon::prelude::*;
use sysgen_schema::{EntryPath, HostSpec, Principal};
use sysgen_store::Hash;

use crate::db::{ManifestInfo, Put};
use crate::kind::BuildCx;
use crate::kinds;
use crate::manifest::{Entry, GenerationId, Manifest};
use crate::produce::Produced;
use crate::rootfs::Xattrs;
use crate::sections::Sections;
use crate::{Error, Progress, State, io_err};

mod exclude;
mod hash;
mod index;
mod tree;
mod walk;

use hash::{PendingFile, Src, cache_row, hash_file};
use index::StatIndex;
use walk::Decl;

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
    // Declared files, to hash before the walk; every other declaration
    // and each tree's top go into `decl`, merged into the walk where their
    // paths fall.
    let mut files: BTreeMap<EntryPath, PendingFile> = BTreeMap::new();
    let mut decl: BTreeMap<EntryPath, Decl> = BTreeMap::new();

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
        files.insert(
            p.clone(),
            PendingFile {
                uid: ids.resolve(&f.owner, false, &what)?,
                gid: ids.resolve(&f.group, true, &what)?,
                secret: m.secret,
                hash,
                size,
                xattrs: boxed(declared_xattrs(f, &what)?),
                ..PendingFile::new(src, None, m.mode)
            },
        );
    }
    let (templates, download_rows) = made.finish();
    for (p, d) in &spec.directories {
        let what = format!("{}: directories.{p}", d.declared_in.display());
        files.remove(p);
        decl.insert(
            p.clone(),
            Decl::Ready(Entry::Dir {
                mode: Some(d.mode.bits()),
                uid: ids.resolve(&d.owner, false, &what)?,
                gid: ids.resolve(&d.group, true, &what)?,
                xattrs: Xattrs::default(),
            }),
        );
    }
    for (p, s) in &spec.symlinks {
        files.remove(p);
        decl.insert(
            p.clone(),
            Decl::Ready(Entry::Symlink {
                target: s.target.clone(),
                uid: None,
                gid: None,
            }),
        );
    }
    let trees: Vec<(&EntryPath, &sysgen_schema::TreeSpec)> = spec.trees.iter().collect();
    let mut walks = Vec::with_capacity(trees.len());
    for (i, (p, t)) in trees.iter().enumerate() {
        let i = u32::try_from(i)
            .map_err(|_| Error::Invalid("more than 2^32 trees are declared".into()))?;
        let what = format!("{}: trees.{p}", t.declared_in.display());
        let over = tree::Overrides {
            uid: ids.resolve(&t.owner, false, &what)?,
            gid: ids.resolve(&t.group, true, &what)?,
        };
        if decl.contains_key(*p) || files.contains_key(*p) {
            return Err(Error::Invalid(format!(
                "{what}: the tree provides {p}, which the configuration also declares; declare it in one place only"
            )));
        }
        walks.push(tree::Walk::new(i, p, t, over)?);
        decl.insert((*p).clone(), Decl::Tree(i));
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
    // A kind's directory replaces what else is declared at its path, and
    // the entry a tree gives there (not the tree's content below).
    for (p, e) in dirs {
        files.remove(&p);
        let tree = match decl.get(&p) {
            Some(Decl::Tree(t) | Decl::Over(_, Some(t))) => Some(*t),
            _ => None,
        };
        decl.insert(p, Decl::Over(e, tree));
    }
    let dir_like = |d: &Decl| match d {
        Decl::Ready(e) => e.is_dir(),
        Decl::Failed(_) => false,
        Decl::Tree(_) | Decl::Parent | Decl::Over(..) => true,
    };
    state.refuse_in_state_dir(&decl, dir_like)?;
    state.refuse_in_state_dir(&files, |_| false)?;
    // Every ancestor of a declared path is a directory sysgen makes sure
    // exists (unless a tree gives one there). Only the missing ones are
    // collected, and a walk up stops at the first ancestor already known:
    // its own ancestors are, or will be, seen from it.
    let mut missing: BTreeSet<EntryPath> = BTreeSet::new();
    for p in decl.keys().chain(files.keys()) {
        let mut up = p.parent();
        while let Some(a) = up {
            if decl.contains_key(&a) || files.contains_key(&a) || missing.contains(&a) {
                break;
            }
            up = a.parent();
            missing.insert(a);
        }
    }
    for a in missing {
        decl.insert(a, Decl::Parent);
    }

    let cache = StatIndex::load(&state.dir)?;
    let store = &state.store;
    let batch = store.batch();
    let declared_files = files.len() as u64;
    opts.progress.start("hashing", declared_files);
    // Declared files first, in parallel; an error waits in its place for
    // the walk, so that the one reported is the first in path order.
    let cached = std::sync::atomic::AtomicU64::new(0);
    // The stat index's new records: spilled to a file, a run per
    // directory, merged when the index is written (index/spill.rs).
    let spill = index::spill::Spill::new(&state.dir);
    let mut rows = Vec::new();
    let hashed: Vec<(EntryPath, Result<PendingFile, Error>)> = files
        .into_iter()
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(p, mut f)| {
            let r = hash_file(&mut f, &cache, store, &batch, &cached);
            opts.progress.advance(1);
            (p, r.map(|()| f))
        })
        .collect();
    for (p, r) in hashed {
        let d = match r {
            Ok(f) => {
                let entry = f.entry();
                if let (true, Some(stat), Src::Path(path)) = (f.cache, f.stat, f.src) {
                    rows.push((path, cache_row(&stat, f.hash)));
                }
                Decl::Ready(entry)
            }
            Err(e) => Decl::Failed(e),
        };
        decl.insert(p, d);
    }
    // Declared files' sources are anywhere: one run, keyed by whole paths.
    spill.run(
        &[],
        rows.iter()
            .map(|(p, r)| (p.as_os_str().as_bytes(), *r))
            .collect(),
    )?;
    drop(rows);

    let reserved = crate::state::reserved_path(state.root.path(), &state.dir);
    let top = walk::decl_tree(decl)?;
    // What earlier builds made of the trees' directories (walk/clean.rs).
    let records = state.db.dir_records()?;
    let (walked, written, (files, cached)) = state.db.insert_built(|sink| {
        let (tx, rx) = std::sync::mpsc::sync_channel(NODES_IN_FLIGHT);
        let cx = walk::Cx {
            walks,
            cache: &cache,
            store,
            batch: &batch,
            progress: opts.progress,
            reserved,
            sink: tx,
            records: &records,
            linked: Default::default(),
            spill: &spill,
            files: Default::default(),
            cached,
        };
        let (walked, cx, stored) = std::thread::scope(|s| {
            let walker = s.spawn(move || {
                let r = cx
                    .dir(None, None, top)
                    .and_then(|d| Ok((cx.finish(d.child)?, d.entries, d.bytes)));
                // The sink goes with the rest: the loop below ends when it
                // is dropped.
                let walk::Cx { files, cached, .. } = cx;
                (r, (files, cached))
            });
            // The database is this thread's: it takes the nodes as they
            // come, each once (equal subtrees make equal nodes), and the
            // directories' records.
            let mut seen = HashSet::new();
            let mut stored = Ok(());
            while let Ok(put) = rx.recv() {
                if let Put::Node(id, _) = &put
                    && !seen.insert(*id)
                {
                    continue;
                }
                stored = sink(put);
                if stored.is_err() {
                    // The walk's next node fails to send and it stops.
                    break;
                }
            }
            drop(rx);
            let (walked, cx) = walker
                .join()
                .map_err(|_| Error::Internal("the build's walk panicked".into()))?;
            Ok::<_, Error>((walked, cx, stored))
        })?;
        stored?;
        let walked = walked?;
        let (files, cached) = cx;
        // Objects are durable before anything refers to them: before the
        // nodes' transaction commits.
        let written = batch.commit()?;
        Ok((walked, written, (files, cached)))
    })?;
    opts.progress.finish();
    let (root, entries, bytes) = walked;
    let files_cached = cached.into_inner();
    let files_hashed = (declared_files + files.into_inner()).saturating_sub(files_cached);
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
            entries,
            bytes,
            built_at: opts.now,
        },
    )?;
    // Only files hashed again make new records: an unchanged build
    // writes no index at all.
    if let Some(runs) = spill.finish()? {
        index::write(&state.dir, &cache, &runs)?;
    }
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
        files_cached,
        objects_written: written.objects_written,
    })
}

/// Nodes made and not yet in the database: the walk waits when the
/// database is this far behind (each node is a directory's listing).
const NODES_IN_FLIGHT: usize = 64;

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

/// A first switch holds a `Change` per entry (docs/performance.md,
/// "Memory toward a million files").
#[test]
fn per_file_records_stay_small() {
    assert!(size_of::<crate::manifest::Change>() <= 144);
}
