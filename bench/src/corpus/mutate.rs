//! The next generation of a corpus: files modified, deleted and added in place.

use super::content::{
    KEYS, Kind, VALUES, binary_content, draw_size, file_name, is_binary_name, line_pool, mode_for,
    text_content,
};
use super::mutation_epoch;
use super::tree::{list_tree, normalize, set_mtime, write_file};
use crate::Result;
use crate::prng::Rng;
use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// How many files a mutation modifies, adds and deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MutationSpec {
    pub modify: usize,
    pub add: usize,
    pub delete: usize,
}

impl MutationSpec {
    /// Modify `per_mille`‰ of `nfiles`, add and delete half as many each (at least one each).
    pub fn per_mille(nfiles: usize, per_mille: usize) -> Self {
        let modify = (nfiles * per_mille / 1000).max(1);
        let half = (nfiles * per_mille / 2000).max(1);
        MutationSpec {
            modify,
            add: half,
            delete: half,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MutationStats {
    pub modified: usize,
    pub added: usize,
    pub deleted: usize,
    pub files_after: usize,
}

/// Mutate the tree at `root` in place, deterministically for (tree, spec, seed, round):
/// modify `spec.modify` files, delete `spec.delete` (never a symlink's target), add `spec.add`.
pub fn mutate(root: &Path, spec: MutationSpec, seed: u64, round: u32) -> Result<MutationStats> {
    let (files, links, dirs) = list_tree(root)?;
    let mut rng = Rng::derive(seed, 1000 + u64::from(round));
    let pool = line_pool(&mut Rng::derive(seed, 3), 2000);
    let mtime = mutation_epoch(round);
    let mut protected = HashSet::new();
    for l in &links {
        let target = fs::read_link(root.join(l))?;
        let parent = Path::new(l).parent().unwrap_or(Path::new(""));
        protected.insert(normalize(&parent.join(target).to_string_lossy()));
    }
    if spec.modify + spec.delete * 2 > files.len() {
        return Err(format!("tree too small ({} files) for {spec:?}", files.len()).into());
    }
    // Partial Fisher–Yates: a random order of the files, of which we use a prefix.
    let mut order: Vec<usize> = (0..files.len()).collect();
    for i in 0..order.len().min(spec.modify + spec.delete * 4 + 16) {
        let j = i + rng.below(order.len() - i);
        order.swap(i, j);
    }
    let mut stats = MutationStats::default();
    let mut touched_dirs = BTreeSet::new();
    for &i in &order[..spec.modify] {
        let rel = &files[i];
        let p = root.join(rel);
        let meta = fs::symlink_metadata(&p)?;
        let mut data = Vec::new();
        fs::File::open(&p)?.read_to_end(&mut data)?;
        if is_binary_name(rel) && data.len() > 8192 {
            let off = rng.below(data.len() - 4096);
            rng.fill(&mut data[off..off + 4096]);
        } else {
            let text = String::from_utf8_lossy(&data).into_owned();
            let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
            for _ in 0..rng.range(1, 3) {
                let i = rng.below(lines.len());
                lines[i] = format!(
                    "{} = {}  # changed r{round}",
                    rng.pick(KEYS),
                    rng.next_u32() >> 2
                );
            }
            if rng.chance(0.5) {
                lines.push(format!("{}={}", rng.pick(KEYS), rng.pick(VALUES)));
            }
            data = lines.join("\n").into_bytes();
        }
        write_file(&p, &data, meta.mode() & 0o7777, mtime)?;
        stats.modified += 1;
    }
    for &i in &order[spec.modify..] {
        if stats.deleted == spec.delete {
            break;
        }
        let rel = &files[i];
        if protected.contains(rel) {
            continue;
        }
        fs::remove_file(root.join(rel))?;
        if let Some((d, _)) = rel.rsplit_once('/') {
            touched_dirs.insert(d.to_string());
        }
        stats.deleted += 1;
    }
    if dirs.is_empty() {
        return Err("tree has no directories to add files to".into());
    }
    for _ in 0..spec.add {
        let d = &dirs[rng.below(dirs.len())];
        let mut used: HashSet<String> = fs::read_dir(root.join(d))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        let (kind, size) = draw_size(&mut rng);
        let name = file_name(&mut rng, kind, &mut used);
        let rel = format!("{d}/{name}");
        let data = match kind {
            Kind::Text => text_content(&mut rng, &pool, size, &rel),
            Kind::Binary => binary_content(&mut rng, &pool, size),
        };
        let mode = mode_for(&mut rng, &name);
        write_file(&root.join(&rel), &data, mode, mtime)?;
        touched_dirs.insert(d.clone());
        stats.added += 1;
    }
    for d in &touched_dirs {
        set_mtime(&root.join(d), mtime)?;
    }
    stats.files_after = files.len() + stats.added - stats.deleted;
    Ok(stats)
}
