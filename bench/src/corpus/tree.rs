//! Files and paths of a tree: writing with a fixed mode and mtime, relative
//! link targets, listing and digesting a whole tree.

use crate::Result;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Set the mtime (and atime) of `path` without following a symlink.
pub fn set_mtime(path: &Path, secs: i64) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let ts = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let times = [ts, ts];
    // SAFETY: `c` is a valid NUL-terminated path and `times` points to two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(format!(
            "utimensat {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        )
        .into());
    }
    Ok(())
}

pub(super) fn write_file(path: &Path, data: &[u8], mode: u32, mtime: i64) -> Result<()> {
    fs::write(path, data).map_err(|e| format!("write {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    set_mtime(path, mtime)
}

/// `target` relative to directory `from` (both relative to the same root).
pub(super) fn relative_path(from_dir: &str, target: &str) -> String {
    let a: Vec<&str> = from_dir.split('/').filter(|s| !s.is_empty()).collect();
    let b: Vec<&str> = target.split('/').filter(|s| !s.is_empty()).collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<&str> = vec![".."; a.len() - common];
    parts.extend_from_slice(&b[common..]);
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

pub(super) fn normalize(rel: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    out.join("/")
}

/// Relative paths under `root`, sorted by bytes: (regular files, symlinks, directories).
pub fn list_tree(root: &Path) -> Result<(Vec<String>, Vec<String>, Vec<String>)> {
    let (mut files, mut links, mut dirs) = (Vec::new(), Vec::new(), Vec::new());
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let abs = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        for entry in fs::read_dir(&abs)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let ft = entry.file_type()?;
            if ft.is_dir() {
                dirs.push(child.clone());
                stack.push(child);
            } else if ft.is_symlink() {
                links.push(child);
            } else if ft.is_file() {
                files.push(child);
            }
        }
    }
    files.sort();
    links.sort();
    dirs.sort();
    Ok((files, links, dirs))
}

/// A digest of a whole tree: paths, types, modes, mtimes, contents and link targets.
pub fn tree_digest(root: &Path) -> Result<String> {
    let (files, links, dirs) = list_tree(root)?;
    let mut h = blake3::Hasher::new();
    let add_meta = |h: &mut blake3::Hasher, tag: &str, rel: &str| -> Result<PathBuf> {
        let p = root.join(rel);
        let m = fs::symlink_metadata(&p)?;
        h.update(format!("{tag}\0{rel}\0{:o}\0{}\0", m.mode() & 0o7777, m.mtime()).as_bytes());
        Ok(p)
    };
    for d in &dirs {
        add_meta(&mut h, "d", d)?;
    }
    for f in &files {
        let p = add_meta(&mut h, "f", f)?;
        h.update(blake3::hash(&fs::read(p)?).as_bytes());
    }
    for l in &links {
        let p = add_meta(&mut h, "l", l)?;
        h.update(fs::read_link(p)?.as_os_str().as_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative_path("etc/a", "etc/b/c"), "../b/c");
        assert_eq!(relative_path("etc", "etc/x"), "x");
        assert_eq!(relative_path("usr/share/x", "etc"), "../../../etc");
        assert_eq!(normalize("etc/a/../b/c"), "etc/b/c");
    }
}
