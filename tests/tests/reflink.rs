//! Reflink switches (issue 14, target 5), on a real btrfs on a loop device
//! holding the root, its state directory and the configurations: a new
//! store there is `plain` (it can clone onto the root), a switch clones its
//! files out of the store (shared extents), the root is exactly what the
//! same switch makes on an ordinary directory with a zstd store, gc frees
//! the objects of a dropped generation, a damaged object is refused, push
//! and pull move objects between plain stores, and a
//! crash at every step of a first switch and of a 1% switch is recovered
//! (forward and back) onto exactly one generation with the whole tree right.
//! Without loop devices the tests fail, unless `SYSGEN_TEST_ALLOW_SKIP=1`.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use sysgen_tests::datasets::LoopBtrfs;
use sysgen_tests::{Run, TestEnv, s};

/// A loop btrfs mounted for the test; dropped (unmounted, detached)
/// before the directory that holds its image and mount point.
struct Btrfs {
    fs: LoopBtrfs,
    _dir: tempfile::TempDir,
}

fn btrfs() -> Option<Btrfs> {
    let dir = tempfile::tempdir().unwrap();
    let fs = LoopBtrfs::mount(&dir.path().join("btrfs.img"), &dir.path().join("mnt"))?;
    Some(Btrfs { fs, _dir: dir })
}

/// Bytes that differ for every (`i`, `variant`) and that zstd cannot shrink
/// much, so that a copy and a clone are told apart by their extents.
fn content(i: usize, variant: u64, len: usize) -> Vec<u8> {
    sysgen_tests::noise((i as u64) << 20 ^ variant, len)
}

/// Sizes of the tree's files: below the clone threshold (written), above
/// it (cloned), and above the store's small-file limit (streamed).
const SIZES: [usize; 5] = [100, 1500, 5000, 70_000, 300_000];
const FILES: usize = 30;
const BIG: usize = 1_500_000;

/// Writes the tree source `cfg/site` and the configuration `cfg/<name>`:
/// The files numbered in `changed` get other content, as a 1% switch does.
fn site(env: &TestEnv, name: &str, changed: &[usize], extra: Value) -> PathBuf {
    let src = env.cfg().join("site");
    let _ = fs::remove_dir_all(&src);
    for i in 0..FILES {
        let variant = u64::from(changed.contains(&i));
        let p = src.join(format!("d{}/f{i}", i % 4));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content(i, variant, SIZES[i % SIZES.len()])).unwrap();
        if i % 7 == 3 {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    fs::write(src.join("big"), content(99, 0, BIG)).unwrap();
    let mut cfg = json!({
        "trees": { "/srv/site": { "source": "site" } },
        "files": { "/etc/motd": { "content": "hi\n" } }
    });
    if let Value::Object(more) = extra {
        for (k, v) in more {
            cfg["files"][k] = v;
        }
    }
    env.config(name, cfg)
}

fn store(env: &TestEnv) -> PathBuf {
    env.state().join("store")
}

fn object_path(env: &TestEnv, bytes: &[u8]) -> PathBuf {
    let hex = blake3::hash(bytes).to_hex();
    store(env).join("objects").join(&hex[..2]).join(&hex[2..])
}

/// `btrfs filesystem du --raw` of `p`: (total, exclusive) bytes.
fn du(p: &Path) -> (u64, u64) {
    let o = Command::new("btrfs")
        .args(["filesystem", "du", "--raw", s(p)])
        .output()
        .expect("btrfs filesystem du");
    assert!(o.status.success(), "btrfs filesystem du {p:?}: {o:?}");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = text.lines().nth(1).unwrap_or_else(|| panic!("{text}"));
    let mut cols = line.split_whitespace().map(|c| c.parse::<u64>().unwrap());
    (cols.next().unwrap(), cols.next().unwrap())
}

/// Every file above the clone threshold shares all its extents (with its
/// store object); the store is plain.
fn assert_cloned(env: &TestEnv) {
    let format = fs::read_to_string(store(env).join("format")).unwrap();
    assert_eq!(format.trim(), "plain", "the store on btrfs is not plain");
    let mut big = vec![env.at("/srv/site/big")];
    for i in 0..FILES {
        if SIZES[i % SIZES.len()] as u64 > sysgen_store::CLONE_MIN {
            big.push(env.at(&format!("/srv/site/d{}/f{i}", i % 4)));
        }
    }
    for p in big {
        let (total, exclusive) = du(&p);
        assert!(total > 0, "{p:?} has no extents");
        assert_eq!(
            exclusive, 0,
            "{p:?} is not a clone: {total} bytes, {exclusive} its own"
        );
    }
}

#[test]
fn a_switch_on_btrfs_clones_and_makes_the_same_root_as_a_zstd_store() {
    let Some(b) = btrfs() else { return };
    let env = TestEnv::new_in(&b.fs.mnt);
    let cfg = site(&env, "c.json", &[], json!({}));
    env.switch(&cfg);
    assert_cloned(&env);
    // Objects are raw files: no frames, no packs.
    let big = content(99, 0, BIG);
    assert_eq!(fs::read(object_path(&env, &big)).unwrap(), big);
    assert!(!store(&env).join("objects/pack").exists());
    env.run(&["verify", "--store"]).ok();

    let reference = TestEnv::new();
    let rcfg = site(&reference, "c.json", &[], json!({}));
    reference.switch(&rcfg);
    assert!(
        !store(&reference).join("format").exists(),
        "the store on {:?} was expected to be zstd",
        reference.dir.path()
    );
    assert_eq!(env.tree(), reference.tree());
}

#[test]
fn gc_after_dropping_a_generation_removes_its_plain_objects() {
    let Some(b) = btrfs() else { return };
    let env = TestEnv::new_in(&b.fs.mnt);
    let only_first = content(1000, 0, 50_000);
    let gone = json!({ "/etc/only-first": { "content": String::from_utf8_lossy(&only_first) } });
    let c1 = site(&env, "c1.json", &[], gone);
    env.switch(&c1);
    let text = fs::read(env.at("/etc/only-first")).unwrap();
    let obj = object_path(&env, &text);
    assert!(obj.exists(), "no object {obj:?}");
    let c2 = site(&env, "c2.json", &[3], json!({}));
    env.switch(&c2);
    assert!(obj.exists(), "generation 1 still holds {obj:?}");
    env.run(&["gc", "--keep", "1"]).ok();
    assert!(!obj.exists(), "gc left the object of a dropped generation");
    // What generation 2 uses is all still there.
    env.run(&["verify", "--store"]).ok();
    assert_cloned(&env);
}

#[test]
fn a_damaged_plain_object_is_refused_and_never_reaches_the_root() {
    let Some(b) = btrfs() else { return };
    let env = TestEnv::new_in(&b.fs.mnt);
    let c1 = site(&env, "c1.json", &[], json!({}));
    env.switch(&c1);
    let before = env.tree();
    let c2 = site(&env, "c2.json", &[3], json!({}));
    env.run(&["build", s(&c2)]).ok();
    // f3 (70 kB) is cloned, not written: the clone path refuses it.
    let changed = content(3, 1, SIZES[3]);
    for bytes in [changed, content(99, 0, BIG)] {
        let obj = object_path(&env, &bytes);
        fs::set_permissions(&obj, fs::Permissions::from_mode(0o644)).unwrap();
        let mut data = fs::read(&obj).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        fs::write(&obj, data).unwrap();
    }
    // The big file is unchanged by the switch: only f3's object is read.
    let r = env.run(&["switch", s(&c2)]);
    assert_eq!(r.code, Some(1), "a damaged object was not refused: {r:?}");
    assert!(r.stderr.contains("corrupt"), "{r:?}");
    // The file keeps its old content: the damaged one never reached it.
    assert_eq!(
        fs::read(env.at("/srv/site/d3/f3")).unwrap(),
        content(3, 0, SIZES[3])
    );
    env.run(&["recover", "--rollback"]).ok();
    assert_eq!(env.tree(), before, "the root is not back after the refusal");

    // A fresh root needs the big object, which is cloned, not copied:
    // the clone path refuses it too, and leaves nothing of it behind.
    let fresh = TestEnv::new_in(&b.fs.mnt);
    let c = site(&fresh, "c.json", &[], json!({}));
    fresh.run(&["build", s(&c)]).ok();
    let big = content(99, 0, BIG);
    let obj = object_path(&fresh, &big);
    fs::set_permissions(&obj, fs::Permissions::from_mode(0o644)).unwrap();
    let mut data = fs::read(&obj).unwrap();
    data[BIG / 3] ^= 1;
    fs::write(&obj, data).unwrap();
    let before = fresh.tree();
    let r = fresh.run(&["switch", s(&c)]);
    assert_eq!(r.code, Some(1), "a damaged object was cloned: {r:?}");
    assert!(r.stderr.contains("corrupt"), "{r:?}");
    // A switch stops at the failed step (`recover` says what to do); the
    // file it made in place for the damaged object is gone, not left
    // half-cloned or holding the damaged bytes.
    assert!(
        !fresh.at("/srv/site/big").exists(),
        "the damaged object reached the root"
    );
    fresh.run(&["recover", "--rollback"]).ok();
    assert_eq!(
        fresh.tree(),
        before,
        "the root is not back after the refusal"
    );
}

// ---------------------------------------------------------------- crashes

/// The active generation, None before the first switch.
fn active(env: &TestEnv) -> Option<u64> {
    let r = env.run(&["--json", "list"]);
    if r.code == Some(1) && r.stderr.contains("no sysgen state here") {
        return None;
    }
    r.ok().json()["active"].as_u64()
}

/// Number of steps of a switch to `cfg` (from `--dry-run --json`).
fn steps(env: &TestEnv, cfg: &Path) -> u64 {
    let v = env
        .run(&["switch", s(cfg), "--dry-run", "--json"])
        .ok()
        .json();
    v["steps"].as_array().unwrap().len() as u64
}

/// One transition: `setup` brings a fresh root (on the btrfs) to the
/// "from" state and returns the configuration whose switch is crashed.
struct Case {
    name: &'static str,
    setup: fn(&TestEnv) -> PathBuf,
    from: Option<u64>,
    to: u64,
}

fn setup_first(env: &TestEnv) -> PathBuf {
    fs::create_dir_all(env.at("/var/lib")).unwrap();
    site(env, "c1.json", &[], json!({}))
}

/// Generation 1 active; the switch changes two files of the tree's 31
/// (one written, one cloned): the few steps of a 1% switch.
fn setup_one_percent(env: &TestEnv) -> PathBuf {
    let c1 = setup_first(env);
    env.switch(&c1);
    site(env, "c2.json", &[0, 3], json!({}))
}

fn check(env: &TestEnv, want_tree: &str, want: Option<u64>, ctx: &str) {
    assert_eq!(env.tree(), want_tree, "{ctx}: the root is not right");
    assert_eq!(active(env), want, "{ctx}: wrong active generation");
    let st = env.run(&["--json", "status"]).ok().json();
    assert!(
        st["interrupted"].is_null(),
        "{ctx}: still interrupted: {st}"
    );
    if want.is_some() {
        let v = env.run(&["verify"]);
        assert_eq!(v.code, Some(0), "{ctx}: verify: {v:?}");
    }
}

fn crash_every_step(b: &Btrfs, case: &Case) {
    let (from_tree, to_tree, n) = {
        let env = TestEnv::new_in(&b.fs.mnt);
        let cfg = (case.setup)(&env);
        let from_tree = env.tree();
        let n = steps(&env, &cfg);
        env.switch(&cfg);
        assert_cloned(&env);
        (from_tree, env.tree(), n)
    };
    // After step `k`, or at the fault point `point`.
    let crashed = |k: Option<u64>, point: Option<&str>| -> TestEnv {
        let env = TestEnv::new_in(&b.fs.mnt);
        let cfg = (case.setup)(&env);
        assert_eq!(
            env.tree(),
            from_tree,
            "{}: setup is not repeatable",
            case.name
        );
        let mut c = env.cmd(&["switch", s(&cfg)]);
        if let Some(k) = k {
            c.env("SYSGEN_FAULT_AFTER_STEPS", k.to_string());
        }
        if let Some(p) = point {
            c.env("SYSGEN_FAULT_POINT", p);
        }
        let r = Run::from(c.output().unwrap());
        assert!(
            r.killed,
            "{}: {k:?}/{n} {point:?}: not killed: {r:?}",
            case.name
        );
        env
    };
    for k in 1..n {
        let ctx = format!("{}: crash after step {k} of {n}", case.name);
        let env = crashed(Some(k), None);
        env.run(&["recover"]).ok();
        check(&env, &to_tree, Some(case.to), &format!("{ctx}, recover"));
        assert_cloned(&env);
        drop(env);
        let env = crashed(Some(k), None);
        env.run(&["recover", "--rollback"]).ok();
        check(
            &env,
            &from_tree,
            case.from,
            &format!("{ctx}, recover --rollback"),
        );
    }
    // A file half filled (a clone or copy cut short) is redone whole.
    let env = crashed(None, Some("files.put.partial"));
    env.run(&["recover"]).ok();
    check(
        &env,
        &to_tree,
        Some(case.to),
        &format!("{}: files.put.partial", case.name),
    );
    assert_cloned(&env);
}

#[test]
fn a_crash_at_every_step_of_a_first_switch_on_a_plain_store_is_recovered() {
    let Some(b) = btrfs() else { return };
    crash_every_step(
        &b,
        &Case {
            name: "first switch",
            setup: setup_first,
            from: None,
            to: 1,
        },
    );
}

#[test]
fn a_crash_at_every_step_of_a_one_percent_switch_on_a_plain_store_is_recovered() {
    let Some(b) = btrfs() else { return };
    crash_every_step(
        &b,
        &Case {
            name: "1% switch",
            setup: setup_one_percent,
            from: Some(1),
            to: 2,
        },
    );
}

/// Push reads the plain store's objects through the store API, pull writes
/// them into another plain store, and its switch clones them.
#[test]
fn push_and_pull_between_plain_stores() {
    use sysgen_tests::remote::{RemoteDir, keygen, trust};
    let Some(b) = btrfs() else { return };
    let deployer = TestEnv::new_in(&b.fs.mnt);
    let host = TestEnv::new_in(&b.fs.mnt);
    let remote = RemoteDir::new();
    let public = keygen(&deployer);
    trust(&host, &public);
    let cfg = site(&deployer, "c.json", &[], json!({}));
    let id = deployer.run(&["--json", "build", s(&cfg)]).ok().json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = remote.url();
    deployer
        .run(&["push", &id, &url, "--ref", "hosts/web1"])
        .ok();
    host.run(&["pull", &url, "hosts/web1", "--switch"]).ok();
    deployer.run(&["switch", &id]).ok();
    assert_eq!(host.tree(), deployer.tree());
    assert_cloned(&host);
    assert_cloned(&deployer);
    host.run(&["verify", "--store"]).ok();
}
