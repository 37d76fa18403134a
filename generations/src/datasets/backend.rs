//! The dataset backends: what each [`DatasetStep`] does for a directory, a
//! btrfs subvolume and a zfs dataset, the read-only questions the precheck
//! asks, and what gc destroys.
//!
//! Directories and subvolumes move with `renameat` through the root handle
//! ([`RootDir`]); a directory's snapshot is a copy made through it too. The
//! tools run as child processes with explicit arguments, their stderr in the
//! error: `btrfs subvolume create|snapshot [-r]|delete`, `btrfs property set
//! -ts PATH ro true|false`; `zfs create -p -o mountpoint=P NAME`, `zfs
//! snapshot NAME@SNAP`, `zfs set mountpoint=P|none NAME`, `zfs rename A B`,
//! `zfs destroy [-r] NAME[@SNAP]`, `zfs list -H -p -o name,mountpoint,used
//! NAME`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rusqlite::params;
use serde::Serialize;
use sysgen_schema::EntryPath;

use super::{DatasetStep, How, Kind, Tools, detached_zfs_name, keep_dir, keep_path, need_tool};
use crate::db::Db;
use crate::rootfs::{Live, Owner, RootDir};
use crate::{Error, GenerationId};

/// `statfs` magic of btrfs.
const BTRFS_MAGIC: i64 = 0x9123_683e;
/// The inode number of the top directory of every btrfs subvolume.
const BTRFS_SUBVOL_INO: u64 = 256;

fn tool_err(tool: &Path, args: &[&OsStr], what: &str) -> Error {
    Error::Dataset(format!(
        "`{} {}` failed: {}",
        tool.display(),
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        what.trim()
    ))
}

/// Runs a tool; its stdout, or an error naming the command and carrying its stderr.
fn run(tool: &Path, args: &[&OsStr]) -> Result<String, Error> {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| tool_err(tool, args, &e.to_string()))?;
    if !out.status.success() {
        return Err(tool_err(tool, args, &String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// The host path of `p`, absolute (zfs records mount points as given).
pub(crate) fn host(root: &RootDir, p: &EntryPath) -> PathBuf {
    let base = std::fs::canonicalize(root.path()).unwrap_or_else(|_| root.path().to_owned());
    base.join(&p.as_str()[1..])
}

/// Every mount point of this process's mount namespace.
pub(crate) fn mount_points() -> HashSet<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return HashSet::new();
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape(m)))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(oct) = s.get(i + 1..i + 4)
            && let Ok(v) = u8::from_str_radix(oct, 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn is_mount_point(root: &RootDir, mounts: &HashSet<PathBuf>, p: &EntryPath) -> bool {
    mounts.contains(&host(root, p))
}

fn zfs_exists(zfs: &Path, name: &str) -> Result<Option<(String, u64)>, Error> {
    let args = [
        os("list"),
        os("-H"),
        os("-p"),
        os("-o"),
        os("name,mountpoint,used"),
        os(name),
    ];
    let out = Command::new(zfs)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| tool_err(zfs, &args, &e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("does not exist") {
            return Ok(None);
        }
        return Err(tool_err(zfs, &args, &err));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.trim_end().split('\t');
    let (_, mp, used) = (f.next(), f.next(), f.next());
    Ok(Some((
        mp.unwrap_or_default().to_owned(),
        used.and_then(|u| u.parse().ok()).unwrap_or(0),
    )))
}

/// Where zfs shows the snapshot `sysgen-<snap>` of the dataset mounted at `p`.
fn zfs_snapdir(p: &EntryPath, snap: &str) -> Result<EntryPath, Error> {
    [".zfs", "snapshot", &format!("sysgen-{snap}")]
        .iter()
        .try_fold(p.clone(), |acc, c| acc.join(c))
        .map_err(|e| Error::Invalid(format!("{p}: {e}")))
}

/// Whether zfs has the snapshot `sysgen-<snap>` of `name`.
pub(crate) fn zfs_has_snapshot(zfs: &Path, name: &str, snap: &str) -> Result<bool, Error> {
    Ok(zfs_exists(zfs, &format!("{name}@sysgen-{snap}"))?.is_some())
}

fn is_subvolume(root: &RootDir, p: &EntryPath) -> Result<bool, Error> {
    Ok(match root.inspect(p)? {
        Live::Dir(m) => m.ino == BTRFS_SUBVOL_INO && root.fs_type_at(p)?.0 == BTRFS_MAGIC,
        _ => false,
    })
}

fn is_dir(root: &RootDir, p: &EntryPath) -> Result<bool, Error> {
    Ok(matches!(root.inspect(p)?, Live::Dir(_)))
}

fn fs_name(magic: i64) -> String {
    match magic {
        0xef53 => "ext4".into(),
        BTRFS_MAGIC => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x5846_5342 => "xfs".into(),
        0x2fc1_2fc1 => "zfs".into(),
        0x794c_7630 => "overlayfs".into(),
        m => format!("a filesystem with magic {m:#x}"),
    }
}

/// How a dataset the target newly has would come about, or why it cannot.
pub(crate) fn arrival(
    root: &RootDir,
    p: &EntryPath,
    kind: &Kind,
    tool: Option<&Path>,
    known: Option<&Kind>,
) -> Result<Result<How, String>, Error> {
    let live = root.inspect(p)?;
    if let Kind::Zfs { name } = kind {
        let Some(zfs) = tool else {
            return Ok(Err(format!("{p}: zfs is not installed")));
        };
        let want = host(root, p);
        if let Some((mp, _)) = zfs_exists(zfs, name)? {
            if Path::new(&mp) == want {
                return Ok(Ok(How::Adopt));
            }
            return Ok(Err(format!(
                "{p}: the zfs dataset {name} already exists with mountpoint {mp} (name clash); declare another name, or set its mountpoint to {} yourself to adopt it",
                want.display()
            )));
        }
        if let Live::File(_) | Live::Symlink { .. } | Live::Special(_) = live {
            return Ok(Err(format!(
                "{p}: is a {} on the root, where zfs dataset {name} must be mounted; move it away first",
                live.kind()
            )));
        }
        if let Live::Dir(_) = live
            && !root.list_dir(p)?.is_empty()
        {
            return Ok(Err(format!(
                "{p}: the directory holds files, and mounting zfs dataset {name} there would hide them; move them away (or into the dataset) first"
            )));
        }
        let detached = detached_zfs_name(name);
        return Ok(Ok(if zfs_exists(zfs, &detached)?.is_some() {
            How::Reattach
        } else {
            How::Create
        }));
    }
    let detached = keep_path(p, &["detached"])?;
    let has_detached = is_dir(root, &detached)?;
    if has_detached && known.is_some_and(|k| k != kind) {
        return Ok(Err(format!(
            "{p}: sysgen keeps a detached {} of this path at {detached} (name clash with the {kind} declared now); gc removes it once no generation has it, or move it away yourself",
            known.map(ToString::to_string).unwrap_or_default()
        )));
    }
    match live {
        Live::Blocked { .. } => Ok(Ok(How::Create)),
        Live::File(_) | Live::Symlink { .. } | Live::Special(_) => Ok(Err(format!(
            "{p}: is a {} on the root, where a dataset ({kind}) must go (name clash); move it away first",
            live.kind()
        ))),
        Live::Dir(_) if has_detached => Ok(Err(format!(
            "{p}: a directory is there, and sysgen also keeps the detached dataset at {detached} (name clash); move one of them away first"
        ))),
        Live::Dir(_) => {
            if *kind == Kind::Btrfs && !is_subvolume(root, p)? {
                let (magic, _) = root.fs_type_at(p)?;
                return Ok(Err(format!(
                    "{p}: is a plain directory on {}, not a btrfs subvolume; sysgen adopts only a subvolume and never converts one: move the data into a subvolume yourself, or declare type \"directory\"",
                    fs_name(magic)
                )));
            }
            Ok(Ok(How::Adopt))
        }
        Live::Absent if has_detached => Ok(Ok(How::Reattach)),
        Live::Absent => {
            if *kind == Kind::Btrfs {
                let (magic, at) = root.fs_type_at(p)?;
                if magic != BTRFS_MAGIC {
                    return Ok(Err(format!(
                        "{p}: type btrfs needs a btrfs filesystem, but {} is on {}; put the dataset on a btrfs mount, or declare type \"directory\"",
                        at.map_or_else(|| "the root".to_owned(), |a| a.to_string()),
                        fs_name(magic)
                    )));
                }
            }
            Ok(Ok(How::Create))
        }
    }
}

/// Whether the dataset is at its path now.
pub(crate) fn present(
    root: &RootDir,
    p: &EntryPath,
    kind: &Kind,
    tools: &Tools,
) -> Result<bool, Error> {
    match kind {
        Kind::Zfs { name } => match &tools.zfs {
            Some(zfs) => Ok(zfs_exists(zfs, name)?.is_some()),
            None => Ok(false),
        },
        _ => is_dir(root, p),
    }
}

fn tool_for<'a>(tools: &'a Tools, kind: &Kind, p: &EntryPath) -> Result<Option<&'a Path>, Error> {
    need_tool(tools, kind, p).map_err(Error::Dataset)
}

fn req(t: Option<&Path>) -> Result<&Path, Error> {
    t.ok_or_else(|| Error::Dataset("internal: a dataset tool is missing".into()))
}

fn kind_json(kind: &Kind) -> String {
    serde_json::to_string(kind).unwrap_or_default()
}

fn sql(e: rusqlite::Error) -> Error {
    Error::Db(e.to_string())
}

fn record_snapshot(
    db: &Db,
    p: &EntryPath,
    name: &str,
    kind: &Kind,
    of: u64,
    why: &str,
    now: i64,
) -> Result<(), Error> {
    db.conn()
        .execute(
            "INSERT OR IGNORE INTO dataset_snapshots (path, name, kind, generation, why, taken_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![p.as_str(), name, kind_json(kind), of as i64, why, now],
        )
        .map_err(sql)?;
    Ok(())
}

/// Makes a directory dataset's snapshot: a copy made under a temporary
/// name and renamed into place, so a crash never leaves a partial snapshot
/// under the final name.
fn copy_snapshot(root: &RootDir, from: &EntryPath, to: &EntryPath) -> Result<(), Error> {
    let partial = to
        .parent()
        .and_then(|d| d.join(&format!(".partial-{}", to.file_name())).ok())
        .ok_or_else(|| Error::Invalid(format!("{to}: no parent")))?;
    root.remove_tree(&partial)?;
    root.copy_tree(from, &partial)?;
    root.rename(&partial, to)?;
    Ok(())
}

/// Removes a btrfs subvolume or a directory tree of sysgen's own area.
fn destroy(root: &RootDir, tools: &Tools, kind: &Kind, p: &EntryPath) -> Result<(), Error> {
    if !is_dir(root, p)? {
        return Ok(());
    }
    if *kind == Kind::Btrfs && is_subvolume(root, p)? {
        let btrfs = req(tool_for(tools, kind, p)?)?;
        let h = host(root, p);
        run(btrfs, &[os("subvolume"), os("delete"), h.as_os_str()])?;
        return Ok(());
    }
    root.remove_tree(p)?;
    Ok(())
}

/// Removes the retention area of `p` and its `.sysgen-data` parent when they are empty.
fn prune_keep(root: &RootDir, p: &EntryPath) -> Result<(), Error> {
    let keep = keep_dir(p)?;
    for d in [keep_path(p, &["snapshots"])?, keep.clone()] {
        root.remove(&d)?;
    }
    if let Some(area) = keep.parent() {
        root.remove(&area)?;
    }
    Ok(())
}

/// Runs one dataset step; converges whatever it finds.
pub fn apply_step(
    root: &RootDir,
    db: &Db,
    tools: &Tools,
    step: &DatasetStep,
    now: i64,
) -> Result<(), Error> {
    match step {
        DatasetStep::Snapshot {
            path,
            kind,
            snap,
            of,
        } => {
            let tool = tool_for(tools, kind, path)?;
            match kind {
                Kind::Zfs { name } => {
                    let zfs = req(tool)?;
                    let full = format!("{name}@sysgen-{snap}");
                    let detached = format!("{}@sysgen-{snap}", detached_zfs_name(name));
                    if zfs_exists(zfs, &full)?.is_none()
                        && zfs_exists(zfs, &detached)?.is_none()
                        && zfs_exists(zfs, name)?.is_some()
                    {
                        run(zfs, &[os("snapshot"), os(&full)])?;
                    }
                }
                _ => {
                    let to = keep_path(path, &["snapshots", snap])?;
                    // Taken already (a re-run), or nothing there to take
                    // (detached by the run a crash cut short, after its snapshot).
                    if !is_dir(root, &to)? && is_dir(root, path)? {
                        root.make_dirs(&keep_path(path, &["snapshots"])?)?;
                        if *kind == Kind::Btrfs {
                            let (from, to) = (host(root, path), host(root, &to));
                            run(
                                req(tool)?,
                                &[
                                    os("subvolume"),
                                    os("snapshot"),
                                    os("-r"),
                                    from.as_os_str(),
                                    to.as_os_str(),
                                ],
                            )?;
                        } else {
                            copy_snapshot(root, path, &to)?;
                        }
                    }
                }
            }
            record_snapshot(db, path, snap, kind, *of, "switch", now)?;
        }
        DatasetStep::Attach { path, kind, .. } => {
            let tool = tool_for(tools, kind, path)?;
            match kind {
                Kind::Zfs { name } => {
                    let zfs = req(tool)?;
                    let mp = format!("mountpoint={}", host(root, path).display());
                    let detached = detached_zfs_name(name);
                    if zfs_exists(zfs, name)?.is_some() {
                        // Adopted, or re-attached by the run a crash cut short.
                        if zfs_exists(zfs, name)?
                            .is_some_and(|(m, _)| Path::new(&m) != host(root, path))
                        {
                            run(zfs, &[os("set"), os(&mp), os(name)])?;
                        }
                    } else if zfs_exists(zfs, &detached)?.is_some() {
                        run(zfs, &[os("rename"), os(&detached), os(name)])?;
                        run(zfs, &[os("set"), os(&mp), os(name)])?;
                    } else {
                        run(zfs, &[os("create"), os("-p"), os("-o"), os(&mp), os(name)])?;
                    }
                }
                _ => {
                    let detached = keep_path(path, &["detached"])?;
                    if is_dir(root, path)? {
                        // There already: adopted, or done by an earlier run.
                    } else if is_dir(root, &detached)? {
                        root.rename(&detached, path)?;
                    } else {
                        if let Some(parent) = path.parent() {
                            root.make_dirs(&parent)?;
                        }
                        if *kind == Kind::Btrfs {
                            let h = host(root, path);
                            run(req(tool)?, &[os("subvolume"), os("create"), h.as_os_str()])?;
                        } else {
                            root.make_dir(path, None, Owner::default())?;
                        }
                    }
                }
            }
            db.conn()
                .execute(
                    "INSERT OR REPLACE INTO datasets (path, kind, since) VALUES (?1, ?2, COALESCE((SELECT since FROM datasets WHERE path = ?1), ?3))",
                    params![path.as_str(), kind_json(kind), now],
                )
                .map_err(sql)?;
        }
        DatasetStep::Restore {
            path,
            kind,
            snap,
            pre,
            of,
        } => {
            let tool = tool_for(tools, kind, path)?;
            if let Kind::Zfs { name } = kind {
                // The current contents stay as a zfs snapshot; then the
                // dataset's files are replaced by the snapshot's, read
                // through `.zfs/snapshot`. (`zfs rollback` would destroy
                // every later snapshot.) A re-run redoes the copy: the
                // snapshot `pre` holds what was there first.
                let zfs = req(tool)?;
                let pre_full = format!("{name}@sysgen-{pre}");
                if zfs_exists(zfs, &pre_full)?.is_none() {
                    run(zfs, &[os("snapshot"), os(&pre_full)])?;
                }
                record_snapshot(db, path, pre, kind, *of, "pre-rollback", now)?;
                root.replace_contents(path, &zfs_snapdir(path, snap)?, ".zfs")?;
                return Ok(());
            }
            let snap_p = keep_path(path, &["snapshots", snap])?;
            let pre_p = keep_path(path, &["snapshots", pre])?;
            let staging = keep_path(path, &["staging"])?;
            if !is_dir(root, &pre_p)? {
                // 1. the snapshot's copy, made afresh (a crash may have cut one short)
                destroy(root, tools, kind, &staging)?;
                if *kind == Kind::Btrfs {
                    let (from, to) = (host(root, &snap_p), host(root, &staging));
                    run(
                        req(tool)?,
                        &[
                            os("subvolume"),
                            os("snapshot"),
                            from.as_os_str(),
                            to.as_os_str(),
                        ],
                    )?;
                } else {
                    copy_snapshot(root, &snap_p, &staging)?;
                }
                // 2. the current contents become the pre-rollback snapshot
                if is_dir(root, path)? {
                    root.rename(path, &pre_p)?;
                }
                record_snapshot(db, path, pre, kind, *of, "pre-rollback", now)?;
            }
            if *kind == Kind::Btrfs && is_subvolume(root, &pre_p)? {
                let h = host(root, &pre_p);
                run(
                    req(tool)?,
                    &[
                        os("property"),
                        os("set"),
                        os("-ts"),
                        h.as_os_str(),
                        os("ro"),
                        os("true"),
                    ],
                )?;
            }
            // 3. the copy takes the dataset's place
            if is_dir(root, &staging)? && !is_dir(root, path)? {
                root.rename(&staging, path)?;
            }
        }
        DatasetStep::Unrestore {
            path,
            kind,
            pre,
            aside,
            of,
        } => {
            let tool = tool_for(tools, kind, path)?;
            if let Kind::Zfs { name } = kind {
                let zfs = req(tool)?;
                if zfs_exists(zfs, &format!("{name}@sysgen-{pre}"))?.is_some() {
                    let aside_full = format!("{name}@sysgen-{aside}");
                    if zfs_exists(zfs, &aside_full)?.is_none() {
                        run(zfs, &[os("snapshot"), os(&aside_full)])?;
                    }
                    record_snapshot(db, path, aside, kind, *of, "undone restore", now)?;
                    root.replace_contents(path, &zfs_snapdir(path, pre)?, ".zfs")?;
                }
                return Ok(());
            }
            let pre_p = keep_path(path, &["snapshots", pre])?;
            let aside_p = keep_path(path, &["snapshots", aside])?;
            if is_dir(root, &pre_p)? {
                if *kind == Kind::Btrfs && is_subvolume(root, &pre_p)? {
                    let h = host(root, &pre_p);
                    run(
                        req(tool)?,
                        &[
                            os("property"),
                            os("set"),
                            os("-ts"),
                            h.as_os_str(),
                            os("ro"),
                            os("false"),
                        ],
                    )?;
                }
                if is_dir(root, path)? {
                    root.rename(path, &aside_p)?;
                    record_snapshot(db, path, aside, kind, *of, "undone restore", now)?;
                }
                root.rename(&pre_p, path)?;
                db.conn()
                    .execute(
                        "DELETE FROM dataset_snapshots WHERE path = ?1 AND name = ?2",
                        params![path.as_str(), pre],
                    )
                    .map_err(sql)?;
            }
            destroy(root, tools, kind, &keep_path(path, &["staging"])?)?;
        }
        DatasetStep::Detach {
            path,
            kind,
            discard_if_empty,
        } => {
            let tool = tool_for(tools, kind, path)?;
            match kind {
                Kind::Zfs { name } => {
                    let zfs = req(tool)?;
                    if zfs_exists(zfs, name)?.is_some() {
                        run(zfs, &[os("set"), os("mountpoint=none"), os(name)])?;
                        run(zfs, &[os("rename"), os(name), os(&detached_zfs_name(name))])?;
                    }
                    // zfs leaves the empty mountpoint directory behind.
                    root.remove(path)?;
                }
                _ => {
                    if is_dir(root, path)? {
                        if *discard_if_empty && root.list_dir(path)?.is_empty() {
                            destroy(root, tools, kind, path)?;
                            // A subvolume's rmdir leaves nothing; a directory's too.
                            root.remove(path)?;
                            db.conn()
                                .execute(
                                    "DELETE FROM datasets WHERE path = ?1",
                                    params![path.as_str()],
                                )
                                .map_err(sql)?;
                            prune_keep(root, path)?;
                        } else {
                            let detached = keep_path(path, &["detached"])?;
                            root.make_dirs(&keep_dir(path)?)?;
                            root.rename(path, &detached)?;
                        }
                    }
                }
            }
        }
        DatasetStep::Release { .. } | DatasetStep::NoSnapshot { .. } => {}
    }
    Ok(())
}

// ---- records, for status, list and gc ----

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRow {
    pub name: String,
    /// The generation that was being left when it was taken.
    pub generation: u64,
    /// "switch", "pre-rollback" or "undone restore".
    pub why: String,
    pub taken_at: i64,
    /// Where it is: a path on the root, or a zfs snapshot name.
    pub location: String,
}

fn snapshot_rows(db: &Db) -> Result<BTreeMap<EntryPath, Vec<(Kind, SnapshotRow)>>, Error> {
    let mut st = db
        .conn()
        .prepare_cached("SELECT path, name, kind, generation, why, taken_at FROM dataset_snapshots ORDER BY taken_at, name")
        .map_err(sql)?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    let mut out: BTreeMap<EntryPath, Vec<(Kind, SnapshotRow)>> = BTreeMap::new();
    for (p, name, kind, generation, why, taken_at) in rows {
        let path = EntryPath::parse(&p)
            .map_err(|e| Error::Db(format!("dataset snapshot path {p:?}: {e}")))?;
        let kind: Kind = serde_json::from_str(&kind)
            .map_err(|e| Error::Db(format!("dataset snapshot {p}: {e}")))?;
        let location = super::snapshot_location(&path, &kind, &name);
        out.entry(path).or_default().push((
            kind,
            SnapshotRow {
                name,
                generation: generation as u64,
                why,
                taken_at,
                location,
            },
        ));
    }
    Ok(out)
}

/// Every dataset sysgen attached at some point, with the kind it had.
pub fn known(db: &Db) -> Result<BTreeMap<EntryPath, Kind>, Error> {
    db.json_by_path("SELECT path, kind FROM datasets", "dataset")
}

/// Snapshot names taken per path, so new ones never collide.
pub fn taken(db: &Db) -> Result<BTreeMap<EntryPath, BTreeSet<String>>, Error> {
    Ok(snapshot_rows(db)?
        .into_iter()
        .map(|(p, v)| (p, v.into_iter().map(|(_, s)| s.name).collect()))
        .collect())
}

/// For `rollback --with-data` to generation `to`: per path, the newest
/// snapshot taken when `to` was left, of the kind the target declares.
pub fn restores(
    db: &Db,
    to: u64,
    target: &super::Datasets,
) -> Result<BTreeMap<EntryPath, String>, Error> {
    let mut out = BTreeMap::new();
    for (p, rows) in snapshot_rows(db)? {
        let Some(d) = target.0.get(&p) else { continue };
        if let Some((_, s)) = rows
            .iter()
            .filter(|(k, s)| *k == d.kind && s.generation == to && s.why == "switch")
            .max_by_key(|(_, s)| (s.taken_at, s.name.len(), s.name.clone()))
        {
            out.insert(p, s.name.clone());
        }
    }
    Ok(out)
}

/// The datasets of a generation (from its manifest).
pub fn of_generation(db: &Db, id: &GenerationId) -> Result<super::Datasets, Error> {
    Ok(db
        .manifest(id)?
        .map(|(m, _)| m.datasets)
        .unwrap_or_default())
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetReport {
    pub path: EntryPath,
    pub kind: Kind,
    /// "attached" (the active generation has it), "detached" (kept in the
    /// retention area), or "released" (left in place, no longer managed).
    pub state: &'static str,
    /// Where its data is now.
    pub location: String,
    /// The remaining generations that have it.
    pub generations: Vec<u64>,
    pub snapshots: Vec<SnapshotRow>,
}

/// Every dataset sysgen knows: those of the active generation and those
/// it keeps for other generations, with their snapshots.
pub fn report(state: &crate::State, tools: &Tools) -> Result<Vec<DatasetReport>, Error> {
    let db = &state.db;
    let active = db.active()?.map(|a| a.id);
    let gens: Vec<_> = db
        .generations()?
        .into_iter()
        .filter(|g| g.collected_at.is_none())
        .collect();
    let mut having: BTreeMap<(EntryPath, Kind), Vec<u64>> = BTreeMap::new();
    let mut attached = BTreeSet::new();
    for g in &gens {
        for (p, d) in of_generation(db, &g.id)?.0 {
            if Some(g.id) == active {
                attached.insert((p.clone(), d.kind.clone()));
            }
            having.entry((p, d.kind)).or_default().push(g.number);
        }
    }
    let mut snaps = snapshot_rows(db)?;
    let mut all: BTreeMap<EntryPath, Kind> = known(db)?;
    for (p, k) in attached.iter().chain(having.keys()) {
        all.entry(p.clone()).or_insert_with(|| k.clone());
    }
    let mut out = Vec::new();
    for (p, kind) in all {
        let key = (p.clone(), kind.clone());
        let (st, location) = if attached.contains(&key) {
            ("attached", host(&state.root, &p).display().to_string())
        } else {
            let detached = match &kind {
                Kind::Zfs { name } => tools
                    .zfs
                    .as_deref()
                    .map(|z| zfs_exists(z, &detached_zfs_name(name)))
                    .transpose()?
                    .flatten()
                    .map(|_| detached_zfs_name(name)),
                _ => {
                    let d = keep_path(&p, &["detached"])?;
                    is_dir(&state.root, &d)?.then(|| d.to_string())
                }
            };
            match detached {
                Some(d) => ("detached", d),
                None => ("released", host(&state.root, &p).display().to_string()),
            }
        };
        out.push(DatasetReport {
            snapshots: snaps
                .remove(&p)
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, s)| s)
                .collect(),
            generations: having.remove(&key).unwrap_or_default(),
            path: p,
            kind,
            state: st,
            location,
        });
    }
    Ok(out)
}

// ---- gc ----

/// Something gc destroys (or, with `--dry-run`, would destroy).
#[derive(Debug, Clone, Serialize)]
pub struct GcDataset {
    pub path: EntryPath,
    pub kind: Kind,
    /// "dataset" (its detached data) or "snapshot".
    pub what: &'static str,
    /// A path on the root, or a zfs name.
    pub location: String,
    pub bytes: u64,
    #[serde(skip)]
    snapshot: Option<String>,
}

/// The datasets (detached data and snapshots) that no generation in `kept`
/// has; destroys them unless `dry_run`. Called after gc committed the
/// deletion of the other generations: a crash leaves the records, so the
/// next gc finishes the work.
pub fn gc_datasets(
    state: &crate::State,
    tools: &Tools,
    kept: &[GenerationId],
    dry_run: bool,
) -> Result<Vec<GcDataset>, Error> {
    let db = &state.db;
    let mut live: BTreeSet<(EntryPath, Kind)> = BTreeSet::new();
    for id in kept {
        for (p, d) in of_generation(db, id)?.0 {
            live.insert((p, d.kind));
        }
    }
    let snaps = snapshot_rows(db)?;
    let mut doomed: BTreeMap<(EntryPath, Kind), bool> = BTreeMap::new();
    for (p, k) in known(db)? {
        if !live.contains(&(p.clone(), k.clone())) {
            doomed.insert((p, k), true);
        }
    }
    for (p, rows) in &snaps {
        for (k, _) in rows {
            if !live.contains(&(p.clone(), k.clone())) {
                doomed.entry((p.clone(), k.clone())).or_insert(false);
            }
        }
    }
    let mut out = Vec::new();
    for ((p, kind), has_row) in &doomed {
        for (k, s) in snaps.get(p).into_iter().flatten() {
            if k != kind {
                continue;
            }
            let bytes = match kind {
                // A detached dataset's snapshots went with it (and go with it).
                Kind::Zfs { name } => match tools.zfs.as_deref() {
                    Some(z) => zfs_exists(z, &s.location)?
                        .or(zfs_exists(
                            z,
                            &format!("{}@sysgen-{}", detached_zfs_name(name), s.name),
                        )?)
                        .map_or(0, |(_, u)| u),
                    None => 0,
                },
                _ => state
                    .root
                    .tree_size(&keep_path(p, &["snapshots", &s.name])?)?,
            };
            out.push(GcDataset {
                path: p.clone(),
                kind: kind.clone(),
                what: "snapshot",
                location: s.location.clone(),
                bytes,
                snapshot: Some(s.name.clone()),
            });
        }
        if !has_row {
            continue;
        }
        let detached = match kind {
            Kind::Zfs { name } => {
                let d = detached_zfs_name(name);
                tools
                    .zfs
                    .as_deref()
                    .map(|z| zfs_exists(z, &d))
                    .transpose()?
                    .flatten()
                    .map(|(_, used)| (d, used))
            }
            _ => {
                let d = keep_path(p, &["detached"])?;
                if is_dir(&state.root, &d)? {
                    Some((d.to_string(), state.root.tree_size(&d)?))
                } else {
                    None
                }
            }
        };
        // A released dataset (left in place) is never destroyed: only what
        // sysgen keeps in its retention area.
        out.push(GcDataset {
            path: p.clone(),
            kind: kind.clone(),
            what: "dataset",
            location: detached.as_ref().map_or_else(String::new, |d| d.0.clone()),
            bytes: detached.as_ref().map_or(0, |d| d.1),
            snapshot: None,
        });
    }
    if dry_run {
        out.retain(|g| !g.location.is_empty());
        return Ok(out);
    }
    for g in &out {
        gc_one(state, tools, g)?;
    }
    out.retain(|g| !g.location.is_empty());
    Ok(out)
}

fn gc_one(state: &crate::State, tools: &Tools, g: &GcDataset) -> Result<(), Error> {
    let (root, db) = (&state.root, &state.db);
    match (&g.kind, &g.snapshot) {
        (Kind::Zfs { .. }, Some(name)) => {
            let zfs = req(tool_for(tools, &g.kind, &g.path)?)?;
            if zfs_exists(zfs, &g.location)?.is_some() {
                run(zfs, &[os("destroy"), os(&g.location)])?;
            }
            delete_snapshot_row(db, &g.path, name)?;
        }
        (Kind::Zfs { .. }, None) => {
            if !g.location.is_empty() {
                let zfs = req(tool_for(tools, &g.kind, &g.path)?)?;
                if zfs_exists(zfs, &g.location)?.is_some() {
                    run(zfs, &[os("destroy"), os("-r"), os(&g.location)])?;
                }
            }
            delete_dataset_row(db, &g.path)?;
        }
        (_, Some(name)) => {
            destroy(
                root,
                tools,
                &g.kind,
                &keep_path(&g.path, &["snapshots", name])?,
            )?;
            delete_snapshot_row(db, &g.path, name)?;
            prune_keep(root, &g.path)?;
        }
        (_, None) => {
            destroy(root, tools, &g.kind, &keep_path(&g.path, &["detached"])?)?;
            delete_dataset_row(db, &g.path)?;
            prune_keep(root, &g.path)?;
        }
    }
    Ok(())
}

fn delete_snapshot_row(db: &Db, p: &EntryPath, name: &str) -> Result<(), Error> {
    db.conn()
        .execute(
            "DELETE FROM dataset_snapshots WHERE path = ?1 AND name = ?2",
            params![p.as_str(), name],
        )
        .map_err(sql)?;
    Ok(())
}

fn delete_dataset_row(db: &Db, p: &EntryPath) -> Result<(), Error> {
    db.conn()
        .execute("DELETE FROM datasets WHERE path = ?1", params![p.as_str()])
        .map_err(sql)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
