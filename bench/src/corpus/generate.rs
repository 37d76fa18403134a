//! A fresh corpus: directories, files, duplicates and symlinks.

use super::EPOCH;
use super::content::{
    Kind, NAMES, binary_content, draw_size, file_name, is_binary_name, line_pool, mode_for,
    text_content,
};
use super::tree::{relative_path, set_mtime, write_file};
use crate::Result;
use crate::prng::Rng;
use std::collections::HashSet;
use std::fs;
use std::path::Path;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CorpusStats {
    pub files: usize,
    pub symlinks: usize,
    pub dirs: usize,
    pub bytes: u64,
    pub duplicates: usize,
}

/// Generate a corpus of `nfiles` regular files into `out` (which must be absent or empty).
pub fn generate(nfiles: usize, seed: u64, out: &Path) -> Result<CorpusStats> {
    if out.exists() && fs::read_dir(out)?.next().is_some() {
        return Err(format!("refusing to generate into non-empty {}", out.display()).into());
    }
    fs::create_dir_all(out)?;
    let mut rng = Rng::derive(seed, 1);
    let pool = line_pool(&mut Rng::derive(seed, 2), 8000);

    // Directories: about 20 files each, depth <= 6, bushier near the top.
    let ndirs = (nfiles / 20).max(2);
    let mut dirs: Vec<(String, u32)> = vec![("etc".into(), 1), ("usr/share".into(), 2)];
    let mut used: Vec<HashSet<String>> = vec![HashSet::new(), HashSet::new()];
    while dirs.len() < ndirs {
        let idx = (dirs.len() as f64 * rng.f64().powi(2)) as usize;
        let (parent, depth) = dirs[idx].clone();
        if depth >= 6 {
            continue;
        }
        let suffix = *rng.pick(&[".d", "", "", "-conf"]);
        let mut name = format!("{}{suffix}", rng.pick(NAMES));
        if used[idx].contains(&name) {
            name.push_str(&rng.range(0, 999).to_string());
            if used[idx].contains(&name) {
                continue;
            }
        }
        used[idx].insert(name.clone());
        dirs.push((format!("{parent}/{name}"), depth + 1));
        used.push(HashSet::new());
    }
    for (d, _) in &dirs {
        fs::create_dir_all(out.join(d))?;
    }

    let mut stats = CorpusStats {
        dirs: dirs.len() + 1, // + "usr"
        ..Default::default()
    };
    let mut written: Vec<String> = Vec::with_capacity(nfiles);
    for _ in 0..nfiles {
        let di = rng.below(dirs.len());
        let (data, name) = if !written.is_empty() && rng.chance(0.05) {
            let src = &written[rng.below(written.len())];
            let kind = if is_binary_name(src) {
                Kind::Binary
            } else {
                Kind::Text
            };
            let name = file_name(&mut rng, kind, &mut used[di]);
            stats.duplicates += 1;
            (fs::read(out.join(src))?, name)
        } else {
            let (kind, size) = draw_size(&mut rng);
            let name = file_name(&mut rng, kind, &mut used[di]);
            let tag = format!("{}/{name}", dirs[di].0);
            let data = match kind {
                Kind::Text => text_content(&mut rng, &pool, size, &tag),
                Kind::Binary => binary_content(&mut rng, &pool, size),
            };
            (data, name)
        };
        let rel = format!("{}/{name}", dirs[di].0);
        let mode = mode_for(&mut rng, &name);
        write_file(&out.join(&rel), &data, mode, EPOCH)?;
        stats.bytes += data.len() as u64;
        written.push(rel);
    }
    stats.files = written.len();

    // Relative symlinks, to files (70%) and directories.
    let nlinks = (nfiles / 500).max(1);
    for _ in 0..nlinks {
        let di = rng.below(dirs.len());
        let target = if rng.chance(0.7) {
            written[rng.below(written.len())].clone()
        } else {
            dirs[rng.below(dirs.len())].0.clone()
        };
        let name = format!("{}.link", file_name(&mut rng, Kind::Text, &mut used[di]));
        let rel = format!("{}/{name}", dirs[di].0);
        let p = out.join(&rel);
        std::os::unix::fs::symlink(relative_path(&dirs[di].0, &target), &p)?;
        set_mtime(&p, EPOCH)?;
    }
    stats.symlinks = nlinks;

    let mut by_depth: Vec<&(String, u32)> = dirs.iter().collect();
    by_depth.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (d, _) in by_depth {
        set_mtime(&out.join(d), EPOCH)?;
    }
    set_mtime(&out.join("usr"), EPOCH)?;
    Ok(stats)
}
