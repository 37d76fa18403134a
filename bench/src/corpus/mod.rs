//! The deterministic corpus: a tree shaped like `/etc` + `/usr/share`, and the
//! deterministic mutations that turn one generation of it into the next.
//!
//! Same arguments and same input give a byte-identical tree (contents, modes,
//! symlink targets and mtimes), independent of the machine and of library
//! versions: all randomness comes from [`crate::prng::Rng`].

mod content;
mod generate;
mod mutate;
mod tree;

pub use generate::generate;
pub use mutate::{MutationSpec, mutate};
pub use tree::{list_tree, tree_digest};

/// mtime of every generated entry: 2024-01-01T00:00:00Z.
pub const EPOCH: i64 = 1_704_067_200;

/// mtime of entries written by mutation round `round` (one day apart per round,
/// so that no stat cache can mistake a mutated file for the old one).
pub fn mutation_epoch(round: u32) -> i64 {
    EPOCH + 86_400 * i64::from(round.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fs;
    use std::path::Path;

    #[test]
    fn corpus_is_deterministic() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let sa = generate(200, 1, a.path()).unwrap();
        let sb = generate(200, 1, b.path()).unwrap();
        assert_eq!(sa.files, 200);
        assert_eq!(sa.bytes, sb.bytes);
        assert_eq!(
            tree_digest(a.path()).unwrap(),
            tree_digest(b.path()).unwrap()
        );
        let c = tempfile::tempdir().unwrap();
        generate(200, 2, c.path()).unwrap();
        assert_ne!(
            tree_digest(a.path()).unwrap(),
            tree_digest(c.path()).unwrap()
        );
        let (files, links, _) = list_tree(a.path()).unwrap();
        assert_eq!(files.len(), 200);
        assert_eq!(links.len(), 1);
    }

    #[test]
    fn shape_is_plausible() {
        let d = tempfile::tempdir().unwrap();
        let s = generate(2000, 3, d.path()).unwrap();
        assert_eq!(s.files, 2000);
        assert_eq!(s.symlinks, 4);
        assert!(s.duplicates > 50 && s.duplicates < 160, "{s:?}");
        let (files, _, dirs) = list_tree(d.path()).unwrap();
        let mut sizes: Vec<u64> = files
            .iter()
            .map(|f| fs::metadata(d.path().join(f)).unwrap().len())
            .collect();
        sizes.sort();
        let median = sizes[sizes.len() / 2];
        assert!((700..1500).contains(&median), "median {median}");
        assert!(dirs.iter().all(|d| d.split('/').count() <= 6));
    }

    fn contents(root: &Path) -> HashMap<String, Vec<u8>> {
        let (files, _, _) = list_tree(root).unwrap();
        files
            .into_iter()
            .map(|f| {
                let data = fs::read(root.join(&f)).unwrap();
                (f, data)
            })
            .collect()
    }

    #[test]
    fn mutation_counts_are_right() {
        let d = tempfile::tempdir().unwrap();
        generate(2000, 1, d.path()).unwrap();
        let before = contents(d.path());
        let spec = MutationSpec::per_mille(2000, 10);
        assert_eq!(
            spec,
            MutationSpec {
                modify: 20,
                add: 10,
                delete: 10
            }
        );
        let st = mutate(d.path(), spec, 1, 1).unwrap();
        assert_eq!((st.modified, st.added, st.deleted), (20, 10, 10));
        assert_eq!(st.files_after, 2000);
        let after = contents(d.path());
        let removed = before.keys().filter(|k| !after.contains_key(*k)).count();
        let added = after.keys().filter(|k| !before.contains_key(*k)).count();
        let changed = before
            .iter()
            .filter(|(k, v)| after.get(*k).is_some_and(|w| w != *v))
            .count();
        assert_eq!((changed, added, removed), (20, 10, 10));
        // Symlinks still resolve.
        let (_, links, _) = list_tree(d.path()).unwrap();
        for l in links {
            assert!(fs::metadata(d.path().join(l)).is_ok());
        }
    }

    #[test]
    fn mutation_is_deterministic() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for t in [a.path(), b.path()] {
            generate(300, 5, t).unwrap();
            mutate(t, MutationSpec::per_mille(300, 10), 5, 1).unwrap();
            mutate(t, MutationSpec::per_mille(300, 1), 5, 2).unwrap();
        }
        assert_eq!(
            tree_digest(a.path()).unwrap(),
            tree_digest(b.path()).unwrap()
        );
    }
}
