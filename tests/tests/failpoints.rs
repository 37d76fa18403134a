//! Issue 11, "tests that prove the classes closed": a crash at every named
//! fault point of the store (`SYSGEN_FAULT_POINT`, see
//! `sysgen_store::fault::POINTS`) loses nothing, and the next command
//! finishes the work; gc on a full disk and build/switch on a read-only
//! root fail clearly and change nothing.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value, json};
use sysgen_store::{Area, Hash, Store};
use sysgen_tests::datasets::Tmpfs;
use sysgen_tests::{Run, TestEnv, dump_tree, noise, s};

/// A root whose state is in its default place, or in `state` when set
/// (given to every command as `--state-dir`).
struct World {
    env: TestEnv,
    state: Option<PathBuf>,
}

impl World {
    fn new(state: Option<PathBuf>) -> World {
        World {
            env: TestEnv::new(),
            state,
        }
    }

    fn state(&self) -> PathBuf {
        self.state.clone().unwrap_or_else(|| self.env.state())
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = match &self.state {
            Some(d) => {
                let mut all = vec!["--state-dir", s(d)];
                all.extend_from_slice(args);
                self.env.cmd(&all)
            }
            None => self.env.cmd(args),
        };
        c.env_remove("SYSGEN_FAULT_POINT");
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().unwrap())
    }

    /// Runs with the fault point `point` set: the process must abort there.
    fn crash_at(&self, point: &str, args: &[&str]) {
        let r = Run::from(
            self.cmd(args)
                .env("SYSGEN_FAULT_POINT", point)
                .output()
                .unwrap(),
        );
        assert!(r.killed, "{point}: {args:?} did not abort: {r:?}");
    }

    /// Writes one source file per `(name, content)` and a configuration
    /// `cfg/<cfg>` that puts each at `/etc/<name>`.
    fn config(&self, cfg: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
        let mut decl = Map::new();
        for (name, content) in files {
            let src = self.env.cfg().join(format!("src/{name}"));
            fs::create_dir_all(src.parent().unwrap()).unwrap();
            fs::write(&src, content).unwrap();
            decl.insert(format!("/etc/{name}"), json!({ "source": s(&src) }));
        }
        self.env
            .config(cfg, json!({ "files": Value::Object(decl) }))
    }

    /// Whether the store holds each of `contents` (by hash), in order.
    fn holds(&self, contents: &[&[u8]]) -> Vec<bool> {
        let store = Store::open(&self.state().join("store")).unwrap();
        contents
            .iter()
            .map(|c| store.contains(&Hash::of(c), Area::Public).unwrap())
            .collect()
    }

    /// Every pack has its index and every index its pack; `tmp/` is empty.
    fn assert_tidy(&self) {
        let store = self.state().join("store");
        let tmp = store.join("tmp");
        assert_eq!(
            fs::read_dir(&tmp).unwrap().count(),
            0,
            "{}",
            dump_tree(&tmp, &[])
        );
        let packs = store.join("objects/pack");
        for e in fs::read_dir(&packs).unwrap() {
            let p = e.unwrap().path();
            let other = match p.extension().and_then(|x| x.to_str()) {
                Some("pack") => p.with_extension("idx"),
                Some("idx") => p.with_extension("pack"),
                _ => panic!("{}: not a pack or an index", p.display()),
            };
            assert!(other.exists(), "{} alone", p.display());
        }
    }
}

/// Ten files of 4 KiB that every generation of a scenario shares.
fn common() -> Vec<(String, Vec<u8>)> {
    (0..10)
        .map(|i| (format!("c{i}"), noise(100 + i, 4096)))
        .collect()
}

fn with_common<'a>(
    c: &'a [(String, Vec<u8>)],
    own: &[(&'a str, Vec<u8>)],
) -> Vec<(&'a str, Vec<u8>)> {
    c.iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .chain(own.iter().cloned())
        .collect()
}

// ------------------------------------------------------------------ build

/// Generation 1 switched; generation 2 adds small (packed) files and one
/// large (loose) file.
struct BuildScene {
    w: World,
    cfg2: PathBuf,
    new: Vec<Vec<u8>>,
}

fn build_scene() -> BuildScene {
    let w = World::new(None);
    let c = common();
    let cfg1 = w.config("c1.json", &with_common(&c, &[]));
    w.run(&["switch", s(&cfg1)]).ok();
    let new: Vec<Vec<u8>> = (0..4)
        .map(|i| noise(200 + i, 3000))
        .chain([noise(300, 1_200_000)])
        .collect();
    let names = ["n0", "n1", "n2", "n3", "big"];
    let own: Vec<(&str, Vec<u8>)> = names.iter().copied().zip(new.iter().cloned()).collect();
    let cfg2 = w.config("c2.json", &with_common(&c, &own));
    BuildScene { w, cfg2, new }
}

fn crash_in_build(point: &str) {
    let BuildScene { w, cfg2, new } = build_scene();
    let tree = w.env.tree();
    w.crash_at(point, &["build", s(&cfg2)]);
    // Generation 1 is whole, and the root was never touched.
    w.run(&["verify", "--store"]).ok();
    w.run(&["verify"]).ok();
    assert_eq!(w.env.tree(), tree, "{point}");
    // The next build finishes the work, and its generation switches.
    w.run(&["build", s(&cfg2)]).ok();
    w.assert_tidy();
    let refs: Vec<&[u8]> = new.iter().map(Vec::as_slice).collect();
    assert_eq!(w.holds(&refs), vec![true; new.len()], "{point}");
    w.run(&["switch", s(&cfg2)]).ok();
    w.run(&["verify", "--store"]).ok();
    assert_eq!(fs::read(w.env.at("/etc/big")).unwrap(), new[4], "{point}");
    assert_eq!(fs::read(w.env.at("/etc/n0")).unwrap(), new[0], "{point}");
}

// ----------------------------------------------------------------- switch

/// A crash while a switch creates a new file in place (half of it written
/// under its final name): the root stays marked as interrupted, and
/// `recover` lands exactly on generation 2, or `recover --rollback` exactly
/// on generation 1, with the half-written file gone either way.
fn crash_in_switch(point: &str, back: bool) {
    let w = World::new(None);
    let c = common();
    let cfg1 = w.config("c1.json", &with_common(&c, &[]));
    w.run(&["switch", s(&cfg1)]).ok();
    let tree1 = w.env.tree();
    let own = [
        ("new/big", noise(400, 300_000)),
        ("new/small", noise(401, 5000)),
    ];
    let cfg2 = w.config("c2.json", &with_common(&c, &own));
    // The reference: another root that switched to generation 2 unharmed.
    let r = World::new(None);
    let rc1 = r.config("c1.json", &with_common(&c, &[]));
    r.run(&["switch", s(&rc1)]).ok();
    let rc2 = r.config("c2.json", &with_common(&c, &own));
    r.run(&["switch", s(&rc2)]).ok();
    let tree2 = r.env.tree();

    w.crash_at(point, &["switch", s(&cfg2)]);
    // The crash left a file of the new generation half-written in place.
    let half = ["/etc/new/big", "/etc/new/small"]
        .iter()
        .filter_map(|p| fs::read(w.env.at(p)).ok())
        .any(|b| own.iter().any(|(_, full)| b.len() == full.len() / 2));
    assert!(half, "{point}: no half-written file:\n{}", w.env.tree());
    let status = w.run(&["status"]);
    assert!(status.stdout.contains("interrupted"), "{point}: {status:?}");
    if back {
        w.run(&["recover", "--rollback"]).ok();
        assert_eq!(w.env.tree(), tree1, "{point}: recover --rollback");
    } else {
        w.run(&["recover"]).ok();
        assert_eq!(w.env.tree(), tree2, "{point}: recover");
    }
    w.run(&["verify"]).ok();
    w.run(&["verify", "--store"]).ok();
}

// --------------------------------------------------------------------- gc

/// Four generations, the fourth active, so that `gc --keep 1` meets one pack
/// of each kind: pack 1 loses a small part (index rewrite, holes), pack 2
/// loses everything (dropped), pack 3 keeps a small part (repacked).
struct GcScene {
    w: World,
    live: Vec<Vec<u8>>,
    dead: Vec<Vec<u8>>,
}

fn gc_scene(state: Option<PathBuf>) -> GcScene {
    let w = World::new(state);
    let c = common();
    let a = noise(1, 12 * 1024);
    let d = noise(2, 8 * 1024);
    let b_big = noise(3, 20 * 1024);
    let b_keep = noise(4, 1024);
    let e = noise(5, 2048);
    let gens = [
        vec![("a", a.clone())],
        vec![("d", d.clone())],
        vec![("b", b_big.clone()), ("keep", b_keep.clone())],
        vec![("keep", b_keep.clone()), ("e", e.clone())],
    ];
    for (i, own) in gens.iter().enumerate() {
        let cfg = w.config(&format!("g{i}.json"), &with_common(&c, own));
        w.run(&["switch", s(&cfg)]).ok();
    }
    let mut live: Vec<Vec<u8>> = c.into_iter().map(|(_, b)| b).collect();
    live.extend([b_keep, e]);
    GcScene {
        w,
        live,
        dead: vec![a, d, b_big],
    }
}

impl GcScene {
    /// gc finished: only generation 4 is left, its objects are all there
    /// and readable, the others' are gone.
    fn assert_collected(&self, what: &str) {
        self.w.run(&["verify", "--store"]).ok();
        self.w.assert_tidy();
        let list = self.w.run(&["--json", "list"]).ok().json();
        assert_eq!(list["generations"].as_array().unwrap().len(), 1, "{what}");
        let live: Vec<&[u8]> = self.live.iter().map(Vec::as_slice).collect();
        assert_eq!(self.w.holds(&live), vec![true; live.len()], "{what}");
        let dead: Vec<&[u8]> = self.dead.iter().map(Vec::as_slice).collect();
        assert_eq!(self.w.holds(&dead), vec![false; dead.len()], "{what}");
    }
}

/// Generation 1 has four hundred tiny files that generation 2 keeps, and
/// three of 20 KiB that only it has: `gc --keep 1` frees the three's
/// blocks whole by copying the tiny neighbours out into a new pack (the
/// pack stays: far more than half of it is live).
fn relocate_scene(_state: Option<PathBuf>) -> GcScene {
    let w = World::new(None);
    let tiny: Vec<(String, Vec<u8>)> = (0..400)
        .map(|i| (format!("t{i}"), noise(1000 + i, 200 + i as usize)))
        .collect();
    let dead: Vec<Vec<u8>> = (0..3).map(|i| noise(2000 + i, 20 * 1024)).collect();
    // Named among the tiny ones, so that ingest (in path order, split
    // between threads) packs tiny frames on both sides of each.
    let names = ["t100x", "t200x", "t300x"];
    let own: Vec<(&str, Vec<u8>)> = names.iter().copied().zip(dead.iter().cloned()).collect();
    let cfg1 = w.config("r1.json", &with_common(&tiny, &own));
    w.run(&["switch", s(&cfg1)]).ok();
    let cfg2 = w.config("r2.json", &with_common(&tiny, &[]));
    w.run(&["switch", s(&cfg2)]).ok();
    GcScene {
        w,
        live: tiny.into_iter().map(|(_, b)| b).collect(),
        dead,
    }
}

/// Eighteen generations, each adding one file to the one before: eighteen
/// small packs, all live, more than the store keeps apart, so `gc --keep 1`
/// merges the oldest of them.
fn merge_scene(_state: Option<PathBuf>) -> GcScene {
    let w = World::new(None);
    let files: Vec<(String, Vec<u8>)> = (0..18)
        .map(|i| (format!("m{i}"), noise(3000 + i, 2000)))
        .collect();
    for n in 1..=files.len() {
        let cfg = w.config(&format!("m{n}.json"), &with_common(&files[..n], &[]));
        w.run(&["switch", s(&cfg)]).ok();
    }
    GcScene {
        w,
        live: files.into_iter().map(|(_, b)| b).collect(),
        dead: Vec::new(),
    }
}

fn crash_in_gc(point: &str, scene: fn(Option<PathBuf>) -> GcScene) {
    let g = scene(None);
    let tree = g.w.env.tree();
    g.w.crash_at(point, &["gc", "--keep", "1"]);
    g.w.run(&["verify", "--store"]).ok();
    g.w.run(&["verify"]).ok();
    g.w.run(&["gc", "--keep", "1"]).ok();
    g.assert_collected(point);
    assert_eq!(g.w.env.tree(), tree, "{point}");
}

#[test]
fn a_crash_at_every_fault_point_loses_nothing_and_the_next_command_finishes() {
    assert!(!sysgen_store::fault::POINTS.is_empty());
    for point in sysgen_store::fault::POINTS {
        if point.starts_with("store.batch.") {
            crash_in_build(point);
        } else if point.starts_with("store.gc.merge.") {
            crash_in_gc(point, merge_scene);
        } else if point.starts_with("store.gc.relocate.") {
            crash_in_gc(point, relocate_scene);
        } else if point.starts_with("store.gc.") {
            crash_in_gc(point, gc_scene);
        } else if point.starts_with("files.") {
            crash_in_switch(point, false);
            crash_in_switch(point, true);
        } else if point.starts_with("datasets.") {
            // tests/tests/failpoints_datasets.rs crashes at these.
        } else {
            panic!("{point}: no crash test knows where this point is; add one");
        }
    }
}

#[test]
fn gc_with_no_crash_collects_the_scene() {
    let g = gc_scene(None);
    g.w.run(&["gc", "--keep", "1"]).ok();
    g.assert_collected("plain gc");
}

#[test]
fn an_unknown_fault_point_is_refused_with_the_list() {
    let w = World::new(None);
    let r = Run::from(
        w.cmd(&["list"])
            .env("SYSGEN_FAULT_POINT", "store.nowhere")
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("store.batch.after-pack"), "{}", r.stderr);
}

// ------------------------------------------------------------- full disk

/// Fills the file system of `dir` to the last byte, then frees `slack`
/// bytes of it.
fn fill(dir: &Path, slack: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut f = File::create(&path).unwrap();
    let buf = vec![0xa5u8; 1 << 20];
    let mut n = buf.len();
    while n > 0 {
        match f.write(&buf[..n]) {
            Ok(k) if k > 0 => {}
            _ => n /= 2,
        }
    }
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(slack)).unwrap();
    path
}

/// gc with the disk full but for `slack` bytes: it completes, or fails
/// saying why; nothing is lost, and once there is space gc finishes.
/// Returns gc's first run.
fn gc_on_full_disk(slack: u64) -> Run {
    let scratch = tempfile::tempdir().unwrap();
    let tmpfs = Tmpfs::mount(&scratch.path().join("small"));
    let g = gc_scene(Some(tmpfs.mnt.join("state")));
    let tree = g.w.env.tree();
    let filler = fill(&tmpfs.mnt, slack);
    let r = g.w.run(&["gc", "--keep", "1"]);
    assert!(!r.killed, "{r:?}");
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    match r.code {
        Some(0) => {}
        // SQLite reports a write that found no space as "disk I/O error".
        Some(1) => assert!(
            ["No space left on device", "disk is full", "disk I/O error"]
                .iter()
                .any(|m| r.stderr.contains(m)),
            "slack {slack}: {}",
            r.stderr
        ),
        _ => panic!("slack {slack}: {r:?}"),
    }
    fs::remove_file(filler).unwrap();
    g.w.run(&["verify", "--store"]).ok();
    g.w.run(&["gc", "--keep", "1"]).ok();
    g.assert_collected(&format!("gc after a full disk, slack {slack}"));
    assert_eq!(g.w.env.tree(), tree);
    r
}

#[test]
fn gc_on_a_full_disk_completes_or_fails_clearly_and_loses_nothing() {
    // From no space at all (the database cannot commit), through enough for
    // the database but not for the store's writes (a new index, a repack),
    // to enough for everything: 4 KiB steps (a page) until gc completes.
    let mut store_failed = false;
    for slack in (0..=512u64).map(|k| k * 4096) {
        let r = gc_on_full_disk(slack);
        if r.code == Some(0) {
            assert!(store_failed, "no run failed inside the store's writes");
            return;
        }
        store_failed |= r.stderr.contains("store") && r.stderr.contains("No space left on device");
    }
    panic!("gc never completed, even with 2 MiB free");
}

// -------------------------------------------------------- read-only root

/// A read-only bind mount of a directory over itself, undone on drop.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn bind(dir: &Path) -> ReadOnly {
        let d = s(dir);
        for args in [vec!["--bind", d, d], vec!["-o", "remount,bind,ro", d]] {
            let st = Command::new("mount").args(&args).status().unwrap();
            assert!(st.success(), "mount {args:?} (the tests run as root)");
        }
        ReadOnly(dir.to_owned())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn refused_read_only(r: Run) {
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.contains("Read-only file system") || r.stderr.contains("read-only filesystem"),
        "{}",
        r.stderr
    );
}

#[test]
fn build_and_switch_on_a_read_only_root_fail_clearly_and_change_nothing() {
    let w = World::new(None);
    let c = common();
    let cfg1 = w.config("c1.json", &with_common(&c, &[]));
    w.run(&["switch", s(&cfg1)]).ok();
    let cfg2 = w.config("c2.json", &with_common(&c, &[("n", noise(7, 100))]));
    let whole = || dump_tree(&w.env.root(), &[]);
    let before = whole();
    {
        let _ro = ReadOnly::bind(&w.env.root());
        refused_read_only(w.run(&["build", s(&cfg2)]));
        refused_read_only(w.run(&["switch", s(&cfg2)]));
        assert_eq!(whole(), before);
    }
    assert_eq!(whole(), before);
    w.run(&["verify", "--store"]).ok();
    w.run(&["verify"]).ok();
    w.run(&["switch", s(&cfg2)]).ok();
}

/// With the state writable elsewhere, the switch gets as far as the root:
/// it finds it read-only before its journal, says so and changes nothing;
/// once the root is writable again, the same switch goes through.
#[test]
fn switch_on_a_read_only_root_with_its_state_elsewhere_is_refused_before_its_journal() {
    let scratch = tempfile::tempdir().unwrap();
    let w = World::new(Some(scratch.path().join("state")));
    let c = common();
    let cfg1 = w.config("c1.json", &with_common(&c, &[]));
    w.run(&["switch", s(&cfg1)]).ok();
    let n = noise(7, 100);
    let cfg2 = w.config("c2.json", &with_common(&c, &[("n", n.clone())]));
    let tree = w.env.tree();
    {
        let _ro = ReadOnly::bind(&w.env.root());
        let r = w.run(&["switch", s(&cfg2)]);
        assert!(
            r.stderr.contains("is on a read-only filesystem"),
            "{}",
            r.stderr
        );
        refused_read_only(r);
        assert_eq!(w.env.tree(), tree);
        assert!(!scratch.path().join("state/journal.json").exists());
    }
    w.run(&["switch", s(&cfg2)]).ok();
    w.run(&["verify", "--store"]).ok();
    w.run(&["verify"]).ok();
    assert_eq!(fs::read(w.env.at("/etc/n")).unwrap(), n);
}

/// A switch cut short, then its root mounted read-only: `recover` either
/// way and `gc` fail clearly and change nothing (the state is inside the
/// root); once the root is writable, `recover` finishes and gc runs.
#[test]
fn recover_and_gc_on_a_read_only_root_fail_clearly_and_change_nothing() {
    let w = World::new(None);
    let c = common();
    let cfg1 = w.config("c1.json", &with_common(&c, &[]));
    w.run(&["switch", s(&cfg1)]).ok();
    let n = noise(7, 100);
    let cfg2 = w.config("c2.json", &with_common(&c, &[("n", n.clone())]));
    let r = Run::from(
        w.cmd(&["switch", s(&cfg2)])
            .env("SYSGEN_FAULT_AFTER_STEPS", "1")
            .output()
            .unwrap(),
    );
    assert!(r.killed, "{r:?}");
    let whole = || dump_tree(&w.env.root(), &[]);
    let before = whole();
    {
        let _ro = ReadOnly::bind(&w.env.root());
        refused_read_only(w.run(&["recover"]));
        refused_read_only(w.run(&["recover", "--rollback"]));
        refused_read_only(w.run(&["gc", "--keep", "1"]));
        assert_eq!(whole(), before);
    }
    assert_eq!(whole(), before);
    w.run(&["recover"]).ok();
    assert_eq!(fs::read(w.env.at("/etc/n")).unwrap(), n);
    w.run(&["gc", "--keep", "1"]).ok();
    w.run(&["verify", "--store"]).ok();
    w.run(&["verify"]).ok();
}
