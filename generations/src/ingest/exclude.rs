//! What a tree leaves out of its source: version-control directories
//! unless `vcs: true`, and whatever its `exclude` globs match. Editor
//! backups (`*~`, `*.swp`, `.#*`) are the admin's to name: sysgen cannot
//! tell a backup from a file someone means to deploy.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use sysgen_schema::{EntryPath, TreeSpec};

use crate::Error;

/// The names version-control systems give their metadata: Git, Mercurial,
/// Subversion, Bazaar, Darcs, CVS. A `.git` file (a worktree's or a
/// submodule's link) is left out as well.
pub(crate) const VCS_NAMES: [&str; 6] = [".git", ".hg", ".svn", ".bzr", "_darcs", "CVS"];

/// One tree's filter, compiled once before its walk.
pub(crate) struct Exclude {
    vcs: bool,
    /// Globs without `/`: matched against the entry's name.
    names: GlobSet,
    /// Globs with `/`: matched against the path from the tree's top.
    paths: GlobSet,
    /// The same two for globs ending in `/` (directories only).
    dir_names: GlobSet,
    dir_paths: GlobSet,
}

impl Exclude {
    pub(crate) fn new(tree: &TreeSpec, what: &str) -> Result<Exclude, Error> {
        let mut sets = [
            GlobSetBuilder::new(),
            GlobSetBuilder::new(),
            GlobSetBuilder::new(),
            GlobSetBuilder::new(),
        ];
        for g in &tree.exclude {
            let (body, dir_only) = match g.strip_suffix('/') {
                Some(b) => (b, true),
                None => (g.as_str(), false),
            };
            let anchored = body.contains('/');
            let body = body.strip_prefix('/').unwrap_or(body);
            // `*` stays within one component, as in a shell or .gitignore.
            let glob = GlobBuilder::new(body)
                .literal_separator(true)
                .build()
                .map_err(|e| Error::Invalid(format!("{what}.exclude.{g}: {e}")))?;
            sets[usize::from(dir_only) * 2 + usize::from(anchored)].add(glob);
        }
        let [names, paths, dir_names, dir_paths] = sets.map(|b| b.build());
        let built = |s: Result<GlobSet, globset::Error>| {
            s.map_err(|e| Error::Invalid(format!("{what}.exclude: {e}")))
        };
        Ok(Exclude {
            vcs: tree.vcs,
            names: built(names)?,
            paths: built(paths)?,
            dir_names: built(dir_names)?,
            dir_paths: built(dir_paths)?,
        })
    }

    /// Whether [`Exclude::excludes`] reads the path of an entry (of a
    /// directory, or not): without globs with `/`, only its name, and the
    /// path need not be made for each of 100k entries.
    pub(crate) fn needs_path(&self, is_dir: bool) -> bool {
        !self.paths.is_empty() || (is_dir && !self.dir_paths.is_empty())
    }

    /// Whether the entry at `rel` (from the tree's top, `/`-separated),
    /// named `name`, is left out, with everything under it.
    pub(crate) fn excludes(&self, rel: &str, name: &str, is_dir: bool) -> bool {
        (!self.vcs && VCS_NAMES.contains(&name))
            || self.names.is_match(name)
            || self.paths.is_match(rel)
            || (is_dir && (self.dir_names.is_match(name) || self.dir_paths.is_match(rel)))
    }
}

/// The path of `name` in directory `dir` of the tree at `top`, from the
/// tree's top: `a/b` for `/srv/www/a/b` in the tree at `/srv/www`.
pub(crate) fn relative(top: &EntryPath, dir: &EntryPath, name: &str) -> String {
    match dir.as_str().get(top.as_str().len() + 1..) {
        Some(d) => format!("{d}/{name}"),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unwrap_used, reason = "a test")]
    fn filter(exclude: &[&str], vcs: bool) -> Exclude {
        let tree = TreeSpec {
            source: "/src".into(),
            mode: None,
            declared_in: "/c.json".into(),
            exclude: exclude.iter().map(|s| (*s).to_owned()).collect(),
            vcs,
            owner: None,
            group: None,
            xattrs: false,
        };
        Exclude::new(&tree, "trees./srv").unwrap()
    }

    #[test]
    fn vcs_directories_are_left_out_unless_asked_for() {
        let f = filter(&[], false);
        for n in VCS_NAMES {
            assert!(f.excludes(&format!("a/{n}"), n, true), "{n}");
        }
        assert!(!f.excludes("a/.gitignore", ".gitignore", false));
        assert!(!f.excludes("git", "git", true));
        let f = filter(&[], true);
        assert!(!f.excludes(".git", ".git", true));
    }

    #[test]
    fn globs_by_name_by_path_and_directories_only() {
        let f = filter(&["*.swp", "*~", "/cache/**", "build/", "docs/*.tmp"], false);
        assert!(f.excludes("a/b/.x.swp", ".x.swp", false));
        assert!(f.excludes("conf~", "conf~", false));
        assert!(f.excludes("cache/a/b", "b", false));
        assert!(!f.excludes("a/cache/b", "b", false));
        assert!(f.excludes("build", "build", true));
        assert!(!f.excludes("build", "build", false));
        assert!(f.excludes("docs/x.tmp", "x.tmp", false));
        // `*` does not cross a `/`.
        assert!(!f.excludes("docs/a/x.tmp", "x.tmp", false));
        assert!(!f.excludes("index.html", "index.html", false));
    }

    #[test]
    #[allow(clippy::unwrap_used, reason = "a test")]
    fn relative_paths() {
        let top = EntryPath::parse("/srv/www").unwrap();
        assert_eq!(relative(&top, &top, "a"), "a");
        let dir = EntryPath::parse("/srv/www/a/b").unwrap();
        assert_eq!(relative(&top, &dir, "c"), "a/b/c");
    }
}
