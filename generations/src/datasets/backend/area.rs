//! The datasets that live in the root's own tree (a plain directory, a
//! btrfs subvolume) and keep what they set aside in the retention area
//! next to them (`<parent>/.sysgen-data/<name>/`, see the module docs of
//! `datasets`): every move is a rename through the root handle. What
//! differs between the two, making, copying and destroying one, is a
//! [`Volume`].

use sysgen_schema::EntryPath;
use sysgen_store::fault;

use super::{Backend, Mounts, is_dir};
use crate::Error;
use crate::datasets::records::Recorder;
use crate::datasets::{How, Kind, keep_dir, keep_path};
use crate::rootfs::{Live, RootDir};

/// What a kind of in-tree dataset does its own way.
pub(super) trait Volume {
    fn kind(&self) -> Kind;

    fn check_tool(&self, p: &EntryPath) -> Result<(), String>;

    /// Why the directory already at `p` cannot be adopted, if it cannot.
    fn refuse_adopt(&self, root: &RootDir, p: &EntryPath) -> Result<Option<String>, Error>;

    /// Why no dataset can be made at the absent `p`, if none can.
    fn refuse_create(&self, root: &RootDir, p: &EntryPath) -> Result<Option<String>, Error>;

    /// Makes an empty dataset at `p`, whose parent exists.
    fn create(&self, root: &RootDir, p: &EntryPath) -> Result<(), Error>;

    /// Makes `to` (absent, its parent there) a copy of the dataset `from`;
    /// `read_only` for a snapshot, where the kind has such a thing.
    fn copy(
        &self,
        root: &RootDir,
        from: &EntryPath,
        to: &EntryPath,
        read_only: bool,
    ) -> Result<(), Error>;

    /// Makes the snapshot at `p` read-only or writable again, where the
    /// kind has such a thing.
    fn set_read_only(&self, root: &RootDir, p: &EntryPath, read_only: bool) -> Result<(), Error>;

    /// Destroys the directory `p` of sysgen's own area, whatever it holds.
    fn destroy(&self, root: &RootDir, p: &EntryPath) -> Result<(), Error>;

    /// The identity of the dataset at `p` (see [`Backend::identity`]).
    fn identity(&self, root: &RootDir, p: &EntryPath) -> Result<Option<String>, Error>;

    /// Gives the dataset at `p` the identity `token` if the kind has none of
    /// its own and `p` none yet.
    fn mark(&self, root: &RootDir, p: &EntryPath, token: &str) -> Result<(), Error>;
}

/// The [`Backend`] of an in-tree dataset.
pub(super) struct Area<V>(pub V);

impl<V: Volume> Area<V> {
    fn destroy_if_there(&self, root: &RootDir, p: &EntryPath) -> Result<(), Error> {
        if is_dir(root, p)? {
            self.0.destroy(root, p)?;
        }
        Ok(())
    }
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

impl<V: Volume> Backend for Area<V> {
    fn check_tool(&self, p: &EntryPath) -> Result<(), String> {
        self.0.check_tool(p)
    }

    fn arrival(
        &self,
        root: &RootDir,
        p: &EntryPath,
        known: Option<&Kind>,
    ) -> Result<Result<How, String>, Error> {
        let kind = self.0.kind();
        let detached = keep_path(p, &["detached"])?;
        let has_detached = is_dir(root, &detached)?;
        if has_detached && known.is_some_and(|k| *k != kind) {
            return Ok(Err(format!(
                "{p}: sysgen keeps a detached {} of this path at {detached} (name clash with the {kind} declared now); gc removes it once no generation has it, or move it away yourself",
                known.map(ToString::to_string).unwrap_or_default()
            )));
        }
        let live = root.inspect(p)?;
        Ok(match live {
            // The precheck refuses it (a conflict of its own).
            Live::Blocked { .. } => Ok(How::Create),
            Live::File(_) | Live::Symlink { .. } | Live::Special(_) => Err(format!(
                "{p}: is a {} on the root, where a dataset ({kind}) must go (name clash); move it away first",
                live.kind()
            )),
            Live::Dir(_) if has_detached => Err(format!(
                "{p}: a directory is there, and sysgen also keeps the detached dataset at {detached} (name clash); move one of them away first"
            )),
            Live::Dir(_) => match self.0.refuse_adopt(root, p)? {
                Some(why) => Err(why),
                None => Ok(How::Adopt),
            },
            Live::Absent if has_detached => Ok(How::Reattach),
            Live::Absent => match self.0.refuse_create(root, p)? {
                Some(why) => Err(why),
                None => Ok(How::Create),
            },
        })
    }

    fn present(&self, root: &RootDir, p: &EntryPath) -> Result<bool, Error> {
        is_dir(root, p)
    }

    fn busy(&self, root: &RootDir, mounts: &Mounts, p: &EntryPath) -> bool {
        mounts.contains(root, p)
    }

    fn check_restore(
        &self,
        root: &RootDir,
        mounts: &Mounts,
        p: &EntryPath,
        snap: &str,
    ) -> Result<Vec<String>, Error> {
        if self.busy(root, mounts, p) {
            return Ok(vec![format!(
                "{p}: something is mounted there, so its contents cannot be swapped for the snapshot (busy mount); unmount it first"
            )]);
        }
        let mut out = Vec::new();
        if let Err(e) = self.check_tool(p) {
            out.push(e);
        }
        let at = keep_path(p, &["snapshots", snap])?;
        if !is_dir(root, &at)? {
            out.push(format!(
                "{p}: its snapshot {at} is recorded but missing on the root; roll back without --with-data"
            ));
        }
        Ok(out)
    }

    fn snapshot(&self, root: &RootDir, p: &EntryPath, snap: &str) -> Result<(), Error> {
        let to = keep_path(p, &["snapshots", snap])?;
        // Taken already (a re-run), or nothing there to take (detached by
        // the run a crash cut short, after its snapshot).
        if !is_dir(root, &to)? && is_dir(root, p)? {
            root.make_dirs(&keep_path(p, &["snapshots"])?)?;
            self.0.copy(root, p, &to, true)?;
        }
        Ok(())
    }

    fn attach(
        &self,
        root: &RootDir,
        p: &EntryPath,
        expect: Option<&str>,
        token: &str,
    ) -> Result<(), Error> {
        let detached = keep_path(p, &["detached"])?;
        if let Some(why) = self.stranger(root, p, expect)? {
            return Err(Error::Dataset(crate::error::DatasetError(why)));
        }
        if is_dir(root, p)? {
            // There already: adopted, or done by an earlier run.
        } else if is_dir(root, &detached)? {
            root.rename(&detached, p)?;
        } else {
            if let Some(parent) = p.parent() {
                root.make_dirs(&parent)?;
            }
            self.0.create(root, p)?;
        }
        self.0.mark(root, p, token)
    }

    fn identity(&self, root: &RootDir, p: &EntryPath) -> Result<Option<String>, Error> {
        self.0.identity(root, p)
    }

    fn detached_identity(&self, root: &RootDir, p: &EntryPath) -> Result<Option<String>, Error> {
        self.0.identity(root, &keep_path(p, &["detached"])?)
    }

    fn stranger(
        &self,
        root: &RootDir,
        p: &EntryPath,
        expect: Option<&str>,
    ) -> Result<Option<String>, Error> {
        if !is_dir(root, p)? {
            return Ok(None);
        }
        let here = self.0.identity(root, p)?;
        if expect.is_some() && here.as_deref() == expect {
            return Ok(None);
        }
        let detached = keep_path(p, &["detached"])?;
        let kept = is_dir(root, &detached)?;
        // Without the detached data and without an identity to compare,
        // what is there is the dataset itself (a switch cut short before
        // its detach, or a dataset from before identities were recorded).
        if !kept && expect.is_none() {
            return Ok(None);
        }
        let kind = self.0.kind();
        let what = match &here {
            None => format!("not a {kind} that sysgen made"),
            Some(id) => format!("another {kind} ({id})"),
        };
        let data = if kept {
            format!("the dataset is kept whole at {detached}")
        } else {
            "the dataset is not there either; look for where it was moved".to_owned()
        };
        Ok(Some(format!(
            "{p}: what is there is {what}, not the dataset sysgen detached{}; {data}. sysgen never takes a stranger for its dataset: move {p} away (its contents are not the dataset's), then run the command again",
            expect.map(|e| format!(" ({e})")).unwrap_or_default()
        )))
    }

    fn restore(
        &self,
        root: &RootDir,
        rec: &Recorder<'_>,
        p: &EntryPath,
        snap: &str,
        pre: &str,
    ) -> Result<(), Error> {
        let snap_p = keep_path(p, &["snapshots", snap])?;
        let pre_p = keep_path(p, &["snapshots", pre])?;
        let staging = keep_path(p, &["staging"])?;
        if !is_dir(root, &pre_p)? {
            // 1. the snapshot's copy, made afresh (a crash may have cut one short)
            self.destroy_if_there(root, &staging)?;
            self.0.copy(root, &snap_p, &staging, false)?;
            rec.hit(fault::DATASET_RESTORE_STAGED);
            // 2. the current contents become the pre-rollback snapshot
            if is_dir(root, p)? {
                root.rename(p, &pre_p)?;
            }
            rec.hit(fault::DATASET_RESTORE_SET_ASIDE);
            rec.snapshot_taken(pre, "pre-rollback")?;
        }
        self.0.set_read_only(root, &pre_p, true)?;
        // 3. the copy takes the dataset's place, as the same dataset: a
        // directory's copy gets the marker of the one it replaces
        if is_dir(root, &staging)? && !is_dir(root, p)? {
            root.rename(&staging, p)?;
        }
        match self.0.identity(root, &pre_p)? {
            Some(id) => self.0.mark(root, p, &id),
            None => Ok(()),
        }
    }

    fn unrestore(
        &self,
        root: &RootDir,
        rec: &Recorder<'_>,
        p: &EntryPath,
        pre: &str,
        aside: &str,
    ) -> Result<(), Error> {
        let pre_p = keep_path(p, &["snapshots", pre])?;
        let aside_p = keep_path(p, &["snapshots", aside])?;
        if is_dir(root, &pre_p)? {
            self.0.set_read_only(root, &pre_p, false)?;
            if is_dir(root, p)? {
                root.rename(p, &aside_p)?;
                rec.snapshot_taken(aside, "undone restore")?;
            }
            root.rename(&pre_p, p)?;
            rec.snapshot_gone(pre)?;
        }
        self.destroy_if_there(root, &keep_path(p, &["staging"])?)
    }

    fn detach(
        &self,
        root: &RootDir,
        rec: &Recorder<'_>,
        p: &EntryPath,
        discard_if_empty: bool,
        token: &str,
    ) -> Result<(), Error> {
        let detached = keep_path(p, &["detached"])?;
        // Gone already, or moved by the run a crash cut short: whatever is
        // at the path since is not the dataset and stays where it is.
        if !is_dir(root, p)? || is_dir(root, &detached)? {
            return Ok(());
        }
        if discard_if_empty && root.list_dir(p)?.is_empty() {
            self.0.destroy(root, p)?;
            // A subvolume's destruction leaves nothing; a directory's too.
            root.remove(p)?;
            rec.dataset_gone()?;
            prune_keep(root, p)?;
        } else {
            self.0.mark(root, p, token)?;
            root.make_dirs(&keep_dir(p)?)?;
            rec.hit(fault::DATASET_DETACH_AREA_MADE);
            root.rename(p, &detached)?;
        }
        Ok(())
    }

    fn detached(
        &self,
        root: &RootDir,
        p: &EntryPath,
        measure: bool,
    ) -> Result<Option<(String, u64)>, Error> {
        let d = keep_path(p, &["detached"])?;
        if !is_dir(root, &d)? {
            return Ok(None);
        }
        let bytes = if measure { root.tree_size(&d)? } else { 0 };
        Ok(Some((d.to_string(), bytes)))
    }

    fn snapshot_bytes(&self, root: &RootDir, p: &EntryPath, snap: &str) -> Result<u64, Error> {
        Ok(root.tree_size(&keep_path(p, &["snapshots", snap])?)?)
    }

    fn destroy_snapshot(&self, root: &RootDir, p: &EntryPath, snap: &str) -> Result<(), Error> {
        self.destroy_if_there(root, &keep_path(p, &["snapshots", snap])?)?;
        prune_keep(root, p)
    }

    fn destroy_detached(&self, root: &RootDir, p: &EntryPath, _: &str) -> Result<(), Error> {
        self.destroy_if_there(root, &keep_path(p, &["detached"])?)?;
        prune_keep(root, p)
    }
}
