//! A zfs dataset, mounted at its path. zfs names datasets, not paths, so
//! the calls are: `zfs create -p -o mountpoint=P NAME`, `zfs snapshot
//! NAME@SNAP`, `zfs set mountpoint=P|none NAME`, `zfs rename A B`, `zfs
//! destroy [-r] NAME[@SNAP]`, `zfs list -H -p -o name,mountpoint,used
//! NAME`. A detached dataset is renamed `<name>-sysgen-detached` and
//! unmounted; its snapshots go with it. A restore copies the snapshot's
//! files in through `<path>/.zfs/snapshot` (`zfs rollback` would destroy
//! every later snapshot).
//!
//! The one path zfs gets, the `mountpoint` property, cannot be a
//! descriptor: zfs keeps it and mounts there itself, now and at every boot.
//! [`mountpoint`] checks it against the root handle right before the call.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sysgen_schema::EntryPath;

use super::{Backend, Mounts, Tool, host, need, os};
use crate::Error;
use crate::datasets::records::Recorder;
use crate::datasets::{How, Kind, detached_zfs_name};
use crate::error::DatasetError;
use crate::rootfs::{Live, RootDir};

pub(super) struct Zfs<'a> {
    pub name: &'a str,
    pub tool: Option<&'a Path>,
}

fn missing(p: &EntryPath) -> String {
    format!(
        "{p}: zfs datasets need the `zfs` command, which is not installed; install zfsutils-linux (or pass --zfs PATH)"
    )
}

/// What `zfs ARGS` prints, or `None` when the dataset it names does not
/// exist.
fn query(zfs: Tool<'_>, args: &[&OsStr]) -> Result<Option<String>, Error> {
    let out = zfs.output(args)?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("does not exist") {
            return Ok(None);
        }
        return Err(zfs.err(args, &err));
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// The mountpoint and the bytes used of `name` (a dataset or a snapshot),
/// or `None` when zfs has no such thing.
fn list(zfs: Tool<'_>, name: &str) -> Result<Option<(String, u64)>, Error> {
    let args = [
        os("list"),
        os("-H"),
        os("-p"),
        os("-o"),
        os("name,mountpoint,used"),
        os(name),
    ];
    Ok(query(zfs, &args)?.map(|text| {
        let mut f = text.trim_end().split('\t');
        let (_, mp, used) = (f.next(), f.next(), f.next());
        (
            mp.unwrap_or_default().to_owned(),
            used.and_then(|u| u.parse().ok()).unwrap_or(0),
        )
    }))
}

/// The guid of the file system `name`, or `None` when zfs has none such.
fn guid(zfs: Tool<'_>, name: &str) -> Result<Option<String>, Error> {
    let args = [
        os("get"),
        os("-H"),
        os("-p"),
        os("-o"),
        os("value"),
        os("guid"),
        os(name),
    ];
    Ok(query(zfs, &args)?
        .map(|t| t.trim().to_owned())
        .filter(|g| !g.is_empty()))
}

/// Where zfs shows the snapshot `sysgen-<snap>` of the dataset mounted at `p`.
fn snapdir(p: &EntryPath, snap: &str) -> Result<EntryPath, Error> {
    [".zfs", "snapshot", &format!("sysgen-{snap}")]
        .iter()
        .try_fold(p.clone(), |acc, c| acc.join(c))
        .map_err(|e| Error::Internal(format!("{p}: its snapshot directory: {e}")))
}

/// The `mountpoint=` argument that mounts a dataset at `p`. The parent
/// directory is made through the root handle, then the path zfs will be
/// given must reach the very directory the handle reaches (same device and
/// inode: no symlink planted on the way, the root not moved), and `p`
/// itself must be absent or a directory. Only the moment between this check
/// and zfs's own mount stays open: zfs takes nothing but a path.
fn mountpoint(root: &RootDir, p: &EntryPath, name: &str) -> Result<String, Error> {
    if let Some(parent) = p.parent() {
        root.make_dirs(&parent)?;
    }
    let want = host(root, p);
    let by_handle = nix::sys::stat::fstat(root.open_parent(p)?.as_fd()).map_err(|e| {
        Error::Dataset(DatasetError(format!(
            "{p}: cannot stat its parent directory: {e}"
        )))
    })?;
    let same = want
        .parent()
        .and_then(|d| std::fs::metadata(d).ok())
        .is_some_and(|m| m.dev() == by_handle.st_dev && m.ino() == by_handle.st_ino);
    if !same {
        return Err(Error::Dataset(DatasetError(format!(
            "{p}: {} does not lead to the directory sysgen checked through the root (a symlink on the way?); zfs dataset {name} is not mounted there",
            want.display()
        ))));
    }
    match root.inspect(p)? {
        Live::Absent | Live::Dir(_) => Ok(format!("mountpoint={}", want.display())),
        live => Err(Error::Dataset(DatasetError(format!(
            "{p}: is a {} on the root, where zfs dataset {name} must be mounted; move it away first",
            live.kind()
        )))),
    }
}

impl Zfs<'_> {
    fn tool(&self, p: &EntryPath) -> Result<Tool<'_>, Error> {
        need(self.tool, || missing(p))
    }

    fn snap(&self, snap: &str) -> String {
        format!("{}@sysgen-{snap}", self.name)
    }

    fn detached_snap(&self, snap: &str) -> String {
        format!("{}@sysgen-{snap}", detached_zfs_name(self.name))
    }
}

impl Backend for Zfs<'_> {
    fn check_tool(&self, p: &EntryPath) -> Result<(), String> {
        self.tool.map(|_| ()).ok_or_else(|| missing(p))
    }

    fn arrival(
        &self,
        root: &RootDir,
        p: &EntryPath,
        _: Option<&Kind>,
    ) -> Result<Result<How, String>, Error> {
        let name = self.name;
        let Some(zfs) = self.tool.map(Tool) else {
            return Ok(Err(missing(p)));
        };
        let live = root.inspect(p)?;
        let want = host(root, p);
        if let Some((mp, _)) = list(zfs, name)? {
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
        Ok(Ok(if list(zfs, &detached_zfs_name(name))?.is_some() {
            How::Reattach
        } else {
            How::Create
        }))
    }

    fn present(&self, _: &RootDir, _: &EntryPath) -> Result<bool, Error> {
        match self.tool {
            Some(zfs) => Ok(list(Tool(zfs), self.name)?.is_some()),
            None => Ok(false),
        }
    }

    fn busy(&self, _: &RootDir, _: &Mounts, _: &EntryPath) -> bool {
        // zfs unmounts and renames it: no move of a mounted directory.
        false
    }

    fn check_restore(
        &self,
        _: &RootDir,
        _: &Mounts,
        p: &EntryPath,
        snap: &str,
    ) -> Result<Vec<String>, Error> {
        let Some(zfs) = self.tool.map(Tool) else {
            return Ok(vec![missing(p)]);
        };
        // A detached dataset's snapshots went with it.
        if list(zfs, &self.snap(snap))?.is_none() && list(zfs, &self.detached_snap(snap))?.is_none()
        {
            return Ok(vec![format!(
                "{p}: its snapshot {} is recorded but missing; roll back without --with-data",
                self.snap(snap)
            )]);
        }
        Ok(Vec::new())
    }

    fn snapshot(&self, _: &RootDir, p: &EntryPath, snap: &str) -> Result<(), Error> {
        let zfs = self.tool(p)?;
        let full = self.snap(snap);
        // Taken already (a re-run, perhaps after the detach that renamed
        // it), or nothing there to take.
        if list(zfs, &full)?.is_none()
            && list(zfs, &self.detached_snap(snap))?.is_none()
            && list(zfs, self.name)?.is_some()
        {
            zfs.run(&[os("snapshot"), os(&full)])?;
        }
        Ok(())
    }

    fn attach(
        &self,
        root: &RootDir,
        p: &EntryPath,
        expect: Option<&str>,
        _: &str,
    ) -> Result<(), Error> {
        if let Some(why) = self.stranger(root, p, expect)? {
            return Err(Error::Dataset(crate::error::DatasetError(why)));
        }
        let (zfs, name) = (self.tool(p)?, self.name);
        let detached = detached_zfs_name(name);
        if let Some((mp, _)) = list(zfs, name)? {
            // Adopted, or re-attached by the run a crash cut short.
            if Path::new(&mp) != host(root, p) {
                zfs.run(&[os("set"), os(&mountpoint(root, p, name)?), os(name)])?;
            }
        } else if list(zfs, &detached)?.is_some() {
            let mp = mountpoint(root, p, name)?;
            zfs.run(&[os("rename"), os(&detached), os(name)])?;
            zfs.run(&[os("set"), os(&mp), os(name)])?;
        } else {
            let mp = mountpoint(root, p, name)?;
            zfs.run(&[os("create"), os("-p"), os("-o"), os(&mp), os(name)])?;
        }
        Ok(())
    }

    fn restore(
        &self,
        root: &RootDir,
        rec: &Recorder<'_>,
        p: &EntryPath,
        snap: &str,
        pre: &str,
    ) -> Result<(), Error> {
        // The current contents stay as a zfs snapshot; then the dataset's
        // files are replaced by the snapshot's. A re-run redoes the copy:
        // the snapshot `pre` holds what was there first.
        let zfs = self.tool(p)?;
        let pre_full = self.snap(pre);
        if list(zfs, &pre_full)?.is_none() {
            zfs.run(&[os("snapshot"), os(&pre_full)])?;
        }
        rec.snapshot_taken(pre, "pre-rollback")?;
        root.replace_contents(p, &snapdir(p, snap)?, ".zfs")?;
        Ok(())
    }

    fn unrestore(
        &self,
        root: &RootDir,
        rec: &Recorder<'_>,
        p: &EntryPath,
        pre: &str,
        aside: &str,
    ) -> Result<(), Error> {
        let zfs = self.tool(p)?;
        if list(zfs, &self.snap(pre))?.is_some() {
            let aside_full = self.snap(aside);
            if list(zfs, &aside_full)?.is_none() {
                zfs.run(&[os("snapshot"), os(&aside_full)])?;
            }
            rec.snapshot_taken(aside, "undone restore")?;
            root.replace_contents(p, &snapdir(p, pre)?, ".zfs")?;
        }
        Ok(())
    }

    fn detach(
        &self,
        root: &RootDir,
        _: &Recorder<'_>,
        p: &EntryPath,
        _: bool,
        _: &str,
    ) -> Result<(), Error> {
        let (zfs, name) = (self.tool(p)?, self.name);
        if list(zfs, name)?.is_some() && list(zfs, &detached_zfs_name(name))?.is_none() {
            zfs.run(&[os("set"), os("mountpoint=none"), os(name)])?;
            zfs.run(&[os("rename"), os(name), os(&detached_zfs_name(name))])?;
        }
        // zfs leaves the empty mountpoint directory behind.
        root.remove(p)?;
        Ok(())
    }

    /// Its guid, which stays through the renames of a detach.
    fn identity(&self, _: &RootDir, _: &EntryPath) -> Result<Option<String>, Error> {
        self.tool.map_or(Ok(None), |zfs| guid(Tool(zfs), self.name))
    }

    fn detached_identity(&self, _: &RootDir, _: &EntryPath) -> Result<Option<String>, Error> {
        self.tool.map_or(Ok(None), |zfs| {
            guid(Tool(zfs), &detached_zfs_name(self.name))
        })
    }

    /// A dataset of the name that is not the one sysgen detached: one
    /// made while sysgen keeps the detached one, or one of another guid.
    fn stranger(
        &self,
        _: &RootDir,
        p: &EntryPath,
        expect: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let Some(zfs) = self.tool.map(Tool) else {
            return Ok(None);
        };
        let Some(here) = guid(zfs, self.name)? else {
            return Ok(None);
        };
        let detached = detached_zfs_name(self.name);
        let kept = list(zfs, &detached)?.is_some();
        if !kept && expect.is_none_or(|e| e == here) {
            return Ok(None);
        }
        let data = if kept {
            format!("the dataset is kept whole as {detached}")
        } else {
            "the dataset is not there either; look for where it was renamed".to_owned()
        };
        Ok(Some(format!(
            "{p}: the zfs dataset named {} (guid {here}) is not the one sysgen detached{}; {data}. sysgen never takes a stranger for its dataset: rename or destroy {} yourself, then run the command again",
            self.name,
            expect.map(|e| format!(" (guid {e})")).unwrap_or_default(),
            self.name
        )))
    }

    fn detached(
        &self,
        _: &RootDir,
        _: &EntryPath,
        _: bool,
    ) -> Result<Option<(String, u64)>, Error> {
        let Some(zfs) = self.tool.map(Tool) else {
            return Ok(None);
        };
        let d = detached_zfs_name(self.name);
        Ok(list(zfs, &d)?.map(|(_, used)| (d, used)))
    }

    fn snapshot_bytes(&self, _: &RootDir, _: &EntryPath, snap: &str) -> Result<u64, Error> {
        let Some(zfs) = self.tool.map(Tool) else {
            return Ok(0);
        };
        // A detached dataset's snapshots went with it (and go with it).
        Ok(list(zfs, &self.snap(snap))?
            .or(list(zfs, &self.detached_snap(snap))?)
            .map_or(0, |(_, used)| used))
    }

    fn destroy_snapshot(&self, _: &RootDir, p: &EntryPath, snap: &str) -> Result<(), Error> {
        let zfs = self.tool(p)?;
        // A detached dataset's snapshots went with it: gc destroys those
        // of its collected generations while a kept one still has it.
        for full in [self.snap(snap), self.detached_snap(snap)] {
            if list(zfs, &full)?.is_some() {
                zfs.run(&[os("destroy"), os(&full)])?;
            }
        }
        Ok(())
    }

    fn destroy_detached(&self, _: &RootDir, p: &EntryPath, location: &str) -> Result<(), Error> {
        if location.is_empty() {
            return Ok(());
        }
        let zfs = self.tool(p)?;
        if list(zfs, location)?.is_some() {
            zfs.run(&[os("destroy"), os("-r"), os(location)])?;
        }
        Ok(())
    }
}
