//! Issue 14, target 6: gc gives space back. Twenty generations of a tree,
//! each changing a few percent of its files (mostly small text, as a real
//! `/etc` or `/usr/share`, with some binaries); dropping the oldest one
//! must free, in `du` of the state directory, at least 90% of the bytes
//! that only it used. Those are the objects the drop removes, sized as the
//! store kept them: small ones sit in the first build's pack between
//! objects that stay, so only whole blocks can be given back.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::json;
use sysgen_store::{Area, Store};
use sysgen_tests::{TestEnv, s};

/// A xorshift generator: the same tree for every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Content for file `i` in `round`: text of 100 B to 8 KiB for most files,
/// one in twenty-five a binary of 16 to 200 KiB, half of it noise.
fn content(rng: &mut Rng, i: usize, round: u32) -> Vec<u8> {
    let mut out = format!("# file {i}, round {round}\n").into_bytes();
    if i.is_multiple_of(25) {
        let len = 16 * 1024 + rng.below(184 * 1024) as usize;
        while out.len() < len {
            let word = rng.next();
            if rng.below(2) == 0 {
                out.extend_from_slice(&word.to_le_bytes());
            } else {
                out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
            }
        }
    } else {
        let len = 100 + rng.below(8 * 1024) as usize;
        while out.len() < len {
            let key = rng.below(400);
            out.extend_from_slice(format!("option_{key} = value {}\n", rng.below(50)).as_bytes());
        }
    }
    out
}

/// Bytes the files under `dir` take on disk (allocated blocks, as `du`).
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += meta.blocks() * 512;
        if meta.is_dir() {
            total += du(&entry.path());
        }
    }
    total
}

#[test]
fn dropping_the_oldest_of_twenty_generations_frees_nine_tenths_of_what_only_it_used() {
    const FILES: usize = 3000;
    const CHANGED_PER_GENERATION: u64 = 120;
    let env = TestEnv::new();
    let src = env.cfg().join("tree");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..FILES {
        let path = src.join(format!("d{}/f{i}.conf", i % 60));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content(&mut rng, i, 0)).unwrap();
    }
    let cfg = env.config(
        "tree.json",
        json!({ "trees": { "/srv/tree": { "source": s(&src) } } }),
    );
    for round in 1..=20u32 {
        if round > 1 {
            for _ in 0..CHANGED_PER_GENERATION {
                let i = rng.below(FILES as u64) as usize;
                let path = src.join(format!("d{}/f{i}.conf", i % 60));
                fs::write(&path, content(&mut rng, i, round)).unwrap();
            }
        }
        env.switch(&cfg).ok();
    }
    // A gc that drops nothing merges the twenty builds' small packs (see
    // the store's `merge` module), so that the drop below is measured alone.
    env.run(&["gc"]).ok();
    let store_dir = env.state().join("store");
    let before = {
        let store = Store::open(&store_dir).unwrap();
        store
            .list(Area::Public)
            .unwrap()
            .into_iter()
            .map(|h| (h, store.disk_size(&h, Area::Public).unwrap()))
            .collect::<Vec<_>>()
    };
    let du_before = du(&env.state());
    env.run(&["gc", "--keep", "19"]).ok();
    let du_after = du(&env.state());
    let store = Store::open(&store_dir).unwrap();
    let only_oldest: u64 = before
        .iter()
        .filter(|(h, _)| !store.contains(h, Area::Public).unwrap())
        .map(|(_, n)| n)
        .sum();
    let freed = du_before.saturating_sub(du_after);
    eprintln!("only the oldest used {only_oldest} bytes; du {du_before} -> {du_after}");
    assert!(only_oldest > 100 * 1024, "the scene drops too little");
    assert!(
        freed * 10 >= only_oldest * 9,
        "freed {freed} of the {only_oldest} bytes only the dropped generation used \
         (du {du_before} -> {du_after})"
    );
    env.run(&["verify", "--store"]).ok();
    env.run(&["verify"]).ok();
}
