//! A btrfs subvolume as a dataset. Snapshots are btrfs snapshots (read-only
//! ones, made writable only to be put back), in the retention area on the
//! same filesystem. The `btrfs` tool gets [`HandlePath`]s only:
//! `subvolume create|delete /proc/self/fd/N/name`, `subvolume snapshot [-r]
//! /proc/self/fd/M /proc/self/fd/N/name`, `property set -ts /proc/self/fd/M
//! ro true|false`.

use std::path::Path;

use sysgen_schema::EntryPath;

use super::area::Volume;
use super::{HandlePath, Tool, need, os};
use crate::Error;
use crate::datasets::Kind;
use crate::rootfs::{Live, RootDir};

/// `statfs` magic of btrfs.
const BTRFS_MAGIC: i64 = 0x9123_683e;
/// The inode number of the top directory of every btrfs subvolume.
const BTRFS_SUBVOL_INO: u64 = 256;

pub(super) struct Btrfs<'a> {
    pub tool: Option<&'a Path>,
}

fn is_subvolume(root: &RootDir, p: &EntryPath) -> Result<bool, Error> {
    Ok(match root.inspect(p)? {
        Live::Dir(m) => m.ino == BTRFS_SUBVOL_INO && root.fs_type_at(p)?.0 == BTRFS_MAGIC,
        _ => false,
    })
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

fn missing(p: &EntryPath) -> String {
    format!(
        "{p}: btrfs datasets need the `btrfs` command, which is not installed; install btrfs-progs (or pass --btrfs PATH)"
    )
}

impl Btrfs<'_> {
    fn tool(&self, p: &EntryPath) -> Result<Tool<'_>, Error> {
        need(self.tool, || missing(p))
    }
}

impl Volume for Btrfs<'_> {
    fn kind(&self) -> Kind {
        Kind::Btrfs
    }

    fn check_tool(&self, p: &EntryPath) -> Result<(), String> {
        self.tool.map(|_| ()).ok_or_else(|| missing(p))
    }

    fn refuse_adopt(&self, root: &RootDir, p: &EntryPath) -> Result<Option<String>, Error> {
        if is_subvolume(root, p)? {
            return Ok(None);
        }
        let (magic, _) = root.fs_type_at(p)?;
        Ok(Some(format!(
            "{p}: is a plain directory on {}, not a btrfs subvolume; sysgen adopts only a subvolume and never converts one: move the data into a subvolume yourself, or declare type \"directory\"",
            fs_name(magic)
        )))
    }

    fn refuse_create(&self, root: &RootDir, p: &EntryPath) -> Result<Option<String>, Error> {
        let (magic, at) = root.fs_type_at(p)?;
        if magic == BTRFS_MAGIC {
            return Ok(None);
        }
        Ok(Some(format!(
            "{p}: type btrfs needs a btrfs filesystem, but {} is on {}; put the dataset on a btrfs mount, or declare type \"directory\"",
            at.map_or_else(|| "the root".to_owned(), |a| a.to_string()),
            fs_name(magic)
        )))
    }

    fn create(&self, root: &RootDir, p: &EntryPath) -> Result<(), Error> {
        let at = HandlePath::entry(root, p)?;
        self.tool(p)?
            .run(&[os("subvolume"), os("create"), at.as_os_str()])?;
        Ok(())
    }

    fn copy(
        &self,
        root: &RootDir,
        from: &EntryPath,
        to: &EntryPath,
        read_only: bool,
    ) -> Result<(), Error> {
        let (src, dst) = (HandlePath::dir(root, from)?, HandlePath::entry(root, to)?);
        let mut args = vec![os("subvolume"), os("snapshot")];
        if read_only {
            args.push(os("-r"));
        }
        args.extend([src.as_os_str(), dst.as_os_str()]);
        self.tool(from)?.run(&args)?;
        Ok(())
    }

    fn set_read_only(&self, root: &RootDir, p: &EntryPath, read_only: bool) -> Result<(), Error> {
        if !is_subvolume(root, p)? {
            return Ok(());
        }
        let at = HandlePath::dir(root, p)?;
        self.tool(p)?.run(&[
            os("property"),
            os("set"),
            os("-ts"),
            at.as_os_str(),
            os("ro"),
            os(if read_only { "true" } else { "false" }),
        ])?;
        Ok(())
    }

    fn identity(&self, root: &RootDir, p: &EntryPath) -> Result<Option<String>, Error> {
        if !is_subvolume(root, p)? {
            return Ok(None);
        }
        let at = HandlePath::dir(root, p)?;
        let shown = self
            .tool(p)?
            .run(&[os("subvolume"), os("show"), at.as_os_str()])?;
        // `UUID:` alone; `Parent UUID:` and `Received UUID:` are others'.
        Ok(shown
            .lines()
            .filter_map(|l| l.trim().strip_prefix("UUID:"))
            .map(|u| u.trim().to_owned())
            .find(|u| !u.is_empty() && u != "-"))
    }

    fn mark(&self, _: &RootDir, _: &EntryPath, _: &str) -> Result<(), Error> {
        // A subvolume's UUID is its identity.
        Ok(())
    }

    fn destroy(&self, root: &RootDir, p: &EntryPath) -> Result<(), Error> {
        if !is_subvolume(root, p)? {
            // Not a subvolume: a plain tree, removed as one.
            return Ok(root.remove_tree(p)?);
        }
        let at = HandlePath::entry(root, p)?;
        self.tool(p)?
            .run(&[os("subvolume"), os("delete"), at.as_os_str()])?;
        Ok(())
    }
}
