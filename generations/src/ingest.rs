//! Build: realize a `HostSpec` into the store and record its manifest. The
//! root is only read (its `/etc/passwd` and `/etc/group`, to resolve owner
//! names); nothing on it changes.
//!
//! Sources are hashed in parallel. A stat cache keyed by source path
//! (device, inode, size, mtime, ctime) skips rehashing files that did not
//! change since the last build, as git's index does.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use rayon::prelude::*;
use sysgen_schema::{EntryPath, FileContent, HostSpec, Principal};
use sysgen_store::{Area, Hash};

use crate::db::{CacheRow, ManifestInfo};
use crate::manifest::{Entry, GenerationId, Manifest, build_tree};
use crate::{Error, Progress, State, io_err};

pub struct BuildOptions<'a> {
    pub now: i64,
    pub progress: &'a dyn Progress,
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
    /// A file on the build host, with its stat when the tree walk already
    /// took it (so it is not taken twice).
    Path(PathBuf, Option<CacheRow>),
}

struct PendingFile {
    src: Src,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
    secret: bool,
}

enum Pending {
    File(PendingFile),
    Ready(Entry),
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
    let p = EntryPath::parse(path).map_err(|e| Error::Invalid(e.to_string()))?;
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
    // First, as it can fail on the configuration (an unknown package) and
    // it is quick next to hashing.
    let packages = crate::packages::resolve(state, &spec.packages)?;
    let ids = Ids::read(state)?;
    let mut pending: BTreeMap<EntryPath, Pending> = BTreeMap::new();

    for (p, f) in &spec.files {
        let what = format!("{}: files.{p}", f.declared_in.display());
        let src = match &f.content {
            FileContent::Inline(s) => Src::Inline(s.as_bytes().to_vec()),
            FileContent::Source(path) => Src::Path(path.clone(), None),
        };
        pending.insert(
            p.clone(),
            Pending::File(PendingFile {
                src,
                mode: f.mode.bits(),
                uid: ids.resolve(&f.owner, false, &what)?,
                gid: ids.resolve(&f.group, true, &what)?,
                secret: f.secret,
            }),
        );
    }
    for (p, d) in &spec.directories {
        let what = format!("{}: directories.{p}", d.declared_in.display());
        pending.insert(
            p.clone(),
            Pending::Ready(Entry::Dir {
                mode: Some(d.mode.bits()),
                uid: ids.resolve(&d.owner, false, &what)?,
                gid: ids.resolve(&d.group, true, &what)?,
            }),
        );
    }
    for (p, s) in &spec.symlinks {
        pending.insert(
            p.clone(),
            Pending::Ready(Entry::Symlink {
                target: s.target.clone(),
            }),
        );
    }
    for (p, t) in &spec.trees {
        expand_tree(p, t, &mut pending)?;
    }
    let datasets = crate::datasets::from_spec(spec, &mut |p, d| {
        let what = format!("{}: datasets.{p}", d.declared_in.display());
        // The dataset's top directory: the file steps give it its mode and
        // owner, and `verify` checks them.
        pending.insert(
            p.clone(),
            Pending::Ready(Entry::Dir {
                mode: d.mode.map(|m| m.bits()),
                uid: ids.resolve(&d.owner, false, &what)?,
                gid: ids.resolve(&d.group, true, &what)?,
            }),
        );
        Ok(())
    })?;
    // Every ancestor of a declared path is a directory sysgen makes sure exists.
    let paths: Vec<EntryPath> = pending.keys().cloned().collect();
    for p in &paths {
        for a in p.ancestors() {
            pending.entry(a).or_insert(Pending::Ready(Entry::Dir {
                mode: None,
                uid: None,
                gid: None,
            }));
        }
    }

    // Hash and store every file, in parallel.
    let cache = state.db.stat_cache()?;
    let files: Vec<(&EntryPath, &PendingFile)> = pending
        .iter()
        .filter_map(|(p, e)| match e {
            Pending::File(f) => Some((p, f)),
            Pending::Ready(_) => None,
        })
        .collect();
    opts.progress.start("hashing", files.len() as u64);
    let batch = state.store.batch();
    let new_cache = Mutex::new(Vec::new());
    let cached = std::sync::atomic::AtomicU64::new(0);
    let hashed: Vec<Result<(EntryPath, Entry), Error>> = files
        .par_iter()
        .map(|(p, f)| {
            let area = if f.secret { Area::Secret } else { Area::Public };
            let (hash, size) = match &f.src {
                Src::Inline(bytes) => (batch.put_bytes(bytes, area)?, bytes.len() as u64),
                Src::Path(path, walked) => {
                    let key = path.to_string_lossy().into_owned();
                    let row = match walked {
                        Some(row) => *row,
                        None => cache_row(&std::fs::metadata(path).map_err(io_err(path))?, None),
                    };
                    let hit = match cache.get(&key) {
                        Some(c) if same_file(c, &row) => {
                            state.store.contains(&c.hash, area)?.then_some(c)
                        }
                        _ => None,
                    };
                    match hit {
                        Some(c) => {
                            cached.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            (c.hash, c.size)
                        }
                        _ => {
                            let (hash, size) = batch.put_file(path, area)?;
                            // Cache only if the file did not change while we read it.
                            if let Ok(after) = std::fs::metadata(path) {
                                let after = cache_row(&after, Some(hash));
                                if same_file(&row, &after) && after.size == size {
                                    new_cache
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner())
                                        .push((key, after));
                                }
                            }
                            (hash, size)
                        }
                    }
                }
            };
            opts.progress.advance(1);
            Ok((
                (*p).clone(),
                Entry::File {
                    hash,
                    size,
                    mode: f.mode,
                    uid: f.uid,
                    gid: f.gid,
                    secret: f.secret,
                },
            ))
        })
        .collect();
    opts.progress.finish();
    let files_hashed =
        (files.len() as u64).saturating_sub(cached.load(std::sync::atomic::Ordering::Relaxed));
    // Memory grows with the number of entries: free what is done with first.
    drop(files);
    drop(cache);

    let mut entries: BTreeMap<EntryPath, Entry> = BTreeMap::new();
    for r in hashed {
        let (p, e) = r?;
        entries.insert(p, e);
    }
    for (p, e) in pending {
        if let Pending::Ready(e) = e {
            entries.insert(p, e);
        }
    }
    let written = batch.commit()?;
    // Objects are durable before anything refers to them.
    let bytes = entries
        .values()
        .map(|e| {
            if let Entry::File { size, .. } = e {
                *size
            } else {
                0
            }
        })
        .sum();
    let (root, nodes) = build_tree(&entries);
    state.db.insert_nodes(&nodes)?;
    drop(nodes);
    let manifest = Manifest {
        sysgen: 1,
        host: spec.host.clone(),
        root,
        services: crate::services::Services::from_spec(spec),
        packages,
        datasets,
    };
    let id = state.db.put_manifest(
        &manifest,
        &ManifestInfo {
            config: Some(spec.config.display().to_string()),
            entries: entries.len() as u64,
            bytes,
            built_at: opts.now,
        },
    )?;
    state
        .db
        .update_stat_cache(&new_cache.into_inner().unwrap_or_else(|e| e.into_inner()))?;
    let number = state
        .db
        .generation_of(&id)?
        .filter(|g| g.collected_at.is_none())
        .map(|g| g.number);
    Ok(BuildOutcome {
        id,
        number,
        entries: entries.len() as u64,
        bytes,
        files_hashed,
        files_cached: cached.into_inner(),
        objects_written: written.objects_written,
    })
}

fn cache_row(md: &std::fs::Metadata, hash: Option<Hash>) -> CacheRow {
    CacheRow {
        dev: md.dev(),
        ino: md.ino(),
        size: md.size(),
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
        hash: hash.unwrap_or(Hash::from_bytes([0; 32])),
    }
}

fn same_file(a: &CacheRow, b: &CacheRow) -> bool {
    a.dev == b.dev
        && a.ino == b.ino
        && a.size == b.size
        && a.mtime_ns == b.mtime_ns
        && a.ctime_ns == b.ctime_ns
}

/// Declares every file, directory and symlink under a tree's source at the
/// matching path, with the source's permission bits.
fn expand_tree(
    at: &EntryPath,
    tree: &sysgen_schema::TreeSpec,
    out: &mut BTreeMap<EntryPath, Pending>,
) -> Result<(), Error> {
    let what = format!("{}: trees.{at}", tree.declared_in.display());
    let md = std::fs::symlink_metadata(&tree.source).map_err(io_err(&tree.source))?;
    if !md.is_dir() {
        return Err(Error::Invalid(format!(
            "{what}: source {} is not a directory",
            tree.source.display()
        )));
    }
    insert_unique(
        out,
        at.clone(),
        Pending::Ready(Entry::Dir {
            mode: Some(md.mode() & 0o7777),
            uid: None,
            gid: None,
        }),
        &what,
    )?;
    let mut stack: Vec<(PathBuf, EntryPath)> = vec![(tree.source.clone(), at.clone())];
    while let Some((dir, dest)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(io_err(&dir))?;
        for ent in rd {
            let ent = ent.map_err(io_err(&dir))?;
            let src = ent.path();
            let name = ent.file_name();
            let name = name.to_str().ok_or_else(|| {
                Error::Invalid(format!(
                    "{what}: {} has a name that is not UTF-8; rename it",
                    src.display()
                ))
            })?;
            let p = dest
                .join(name)
                .map_err(|e| Error::Invalid(format!("{what}: {}: {e}", src.display())))?;
            // Relative to the open directory (no symlink followed), not a
            // walk of the whole path again for each of 100k entries.
            let md = ent.metadata().map_err(io_err(&src))?;
            let ft = md.file_type();
            let entry = if ft.is_dir() {
                stack.push((src.clone(), p.clone()));
                Pending::Ready(Entry::Dir {
                    mode: Some(md.mode() & 0o7777),
                    uid: None,
                    gid: None,
                })
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&src).map_err(io_err(&src))?;
                let target = target.to_str().ok_or_else(|| {
                    Error::Invalid(format!(
                        "{what}: symlink {} has a target that is not UTF-8",
                        src.display()
                    ))
                })?;
                Pending::Ready(Entry::Symlink {
                    target: target.to_owned(),
                })
            } else if ft.is_file() {
                Pending::File(PendingFile {
                    src: Src::Path(src.clone(), Some(cache_row(&md, None))),
                    mode: tree.mode.map_or(md.mode() & 0o7777, |m| m.bits()),
                    uid: None,
                    gid: None,
                    secret: false,
                })
            } else {
                return Err(Error::Invalid(format!(
                    "{what}: {} is a special file (socket, fifo or device); trees may hold only files, directories and symlinks",
                    src.display()
                )));
            };
            insert_unique(out, p, entry, &what)?;
        }
    }
    Ok(())
}

fn insert_unique(
    out: &mut BTreeMap<EntryPath, Pending>,
    p: EntryPath,
    e: Pending,
    what: &str,
) -> Result<(), Error> {
    if out.contains_key(&p) {
        return Err(Error::Invalid(format!(
            "{what}: the tree provides {p}, which the configuration also declares; declare it in one place only"
        )));
    }
    out.insert(p, e);
    Ok(())
}
