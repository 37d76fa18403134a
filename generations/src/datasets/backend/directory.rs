//! A plain directory as a dataset: works on every filesystem. It has no
//! snapshots of its own, so sysgen copies it, through the root handle.

use sysgen_schema::EntryPath;

use super::area::Volume;
use super::is_dir;
use crate::Error;
use crate::datasets::Kind;
use crate::rootfs::{Owner, RootDir};

pub(super) struct Directory;

/// The marker that makes a plain directory a dataset sysgen knows: a
/// `trusted.` attribute, which only root can set or remove, so an app or
/// tmpfiles that recreates the directory never carries it.
const MARKER: &str = "trusted.sysgen.dataset";

/// Copies the directory `from` to `to` under a temporary name renamed into
/// place, so a crash never leaves a partial copy under the final name.
fn copy_whole(root: &RootDir, from: &EntryPath, to: &EntryPath) -> Result<(), Error> {
    let partial = to
        .parent()
        .and_then(|d| d.join(&format!(".partial-{}", to.file_name())).ok())
        .ok_or_else(|| Error::Internal(format!("{to}: no parent")))?;
    root.remove_tree(&partial)?;
    root.copy_tree(from, &partial)?;
    root.rename(&partial, to)?;
    Ok(())
}

impl Volume for Directory {
    fn kind(&self) -> Kind {
        Kind::Directory
    }

    fn check_tool(&self, _: &EntryPath) -> Result<(), String> {
        Ok(())
    }

    fn refuse_adopt(&self, _: &RootDir, _: &EntryPath) -> Result<Option<String>, Error> {
        Ok(None)
    }

    fn refuse_create(&self, _: &RootDir, _: &EntryPath) -> Result<Option<String>, Error> {
        Ok(None)
    }

    fn create(&self, root: &RootDir, p: &EntryPath) -> Result<(), Error> {
        root.make_dir(p, None, Owner::default())?;
        Ok(())
    }

    fn copy(
        &self,
        root: &RootDir,
        from: &EntryPath,
        to: &EntryPath,
        _read_only: bool,
    ) -> Result<(), Error> {
        copy_whole(root, from, to)
    }

    fn set_read_only(&self, _: &RootDir, _: &EntryPath, _: bool) -> Result<(), Error> {
        Ok(())
    }

    fn destroy(&self, root: &RootDir, p: &EntryPath) -> Result<(), Error> {
        Ok(root.remove_tree(p)?)
    }

    fn identity(&self, root: &RootDir, p: &EntryPath) -> Result<Option<String>, Error> {
        if !is_dir(root, p)? {
            return Ok(None);
        }
        Ok(root
            .get_xattr(p, MARKER)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn mark(&self, root: &RootDir, p: &EntryPath, token: &str) -> Result<(), Error> {
        if is_dir(root, p)? && root.get_xattr(p, MARKER)?.is_none() {
            match root.set_xattr(p, MARKER, token.as_bytes()) {
                // A filesystem without extended attributes: the dataset
                // goes unmarked, and a stranger is told from it only by
                // its data kept aside (docs/datasets.md).
                Err(e) if e.source.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
                other => other?,
            }
        }
        Ok(())
    }
}
