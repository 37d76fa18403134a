//! gc (what it deletes, what it keeps, what it frees), the state lock, and
//! drift reporting by `verify` and `status`, on real temporary roots.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its message"
)]

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde_json::{Value, json};
use sysgen_tests::{TestEnv, s};

/// `(number, active, pinned)` of every generation `list --json` shows.
fn generations(env: &TestEnv) -> Vec<(u64, bool, bool)> {
    let v = env.run(&["--json", "list"]).ok().json();
    v["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["number"].as_u64().unwrap(),
                g["active"].as_bool().unwrap(),
                g["pinned"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Objects in the store, both areas, as the store itself lists them
/// (packed or in files of their own).
fn store_objects(env: &TestEnv) -> usize {
    let store = sysgen_store::Store::open(&env.state().join("store")).unwrap();
    [sysgen_store::Area::Public, sysgen_store::Area::Secret]
        .into_iter()
        .map(|a| store.list(a).unwrap().len())
        .sum()
}

/// Generation `i`: one file of its own content, and one shared by all.
fn config(env: &TestEnv, i: u32) -> std::path::PathBuf {
    env.config(
        &format!("c{i}.json"),
        json!({
            "files": {
                "/etc/common.conf": { "content": "shared by every generation\n" },
                "/etc/gen.conf": { "content": format!("generation {i}\n") },
                format!("/etc/only-{i}"): { "content": format!("only in {i}\n") }
            }
        }),
    )
}

// ---------------------------------------------------------------- 1

#[test]
fn gc_keep_deletes_old_unpinned_generations_and_frees_their_objects() {
    let env = TestEnv::new();
    let mut trees = Vec::new();
    for i in 1..=5 {
        env.switch(&config(&env, i));
        trees.push(env.tree());
    }
    env.run(&["pin", "2"]).ok();
    assert_eq!(
        generations(&env),
        vec![
            (1, false, false),
            (2, false, true),
            (3, false, false),
            (4, false, false),
            (5, true, false)
        ]
    );
    // 1 shared object + 2 of its own for each of 5 generations.
    let objects_before = store_objects(&env);
    assert_eq!(objects_before, 11);

    let g = env.run(&["--json", "gc", "--keep", "1"]).ok().json();
    assert_eq!(g["gc"]["generations"], json!([1, 3, 4]), "{g}");
    assert_eq!(generations(&env), vec![(2, false, true), (5, true, false)]);
    assert_eq!(store_objects(&env), objects_before - 6);
    assert_eq!(g["gc"]["objects"], 6, "{g}");
    assert_eq!(env.tree(), trees[4], "gc changed the root");

    let r = env.run(&["rollback", "--to", "3"]).expect(2);
    assert!(
        r.stderr.contains("generation 3 was deleted by gc"),
        "{}",
        r.stderr
    );
    let r = env.run(&["switch", "3"]).expect(2);
    assert!(
        r.stderr.contains("generation 3 was deleted by gc"),
        "{}",
        r.stderr
    );
    assert_eq!(env.tree(), trees[4]);
    env.run(&["verify"]).ok();
    env.run(&["verify", "--store"]).ok();

    env.run(&["rollback", "--to", "2"]).ok();
    assert_eq!(env.tree(), trees[1], "rollback after gc is not byte-exact");
    env.run(&["verify"]).ok();
}

#[test]
fn a_config_whose_generation_was_collected_can_be_switched_to_again() {
    let env = TestEnv::new();
    let mut trees = Vec::new();
    for i in 1..=3 {
        env.switch(&config(&env, i));
        trees.push(env.tree());
    }
    env.run(&["gc", "--keep", "1"]).ok();
    assert_eq!(generations(&env), vec![(3, true, false)]);
    // The configuration is given, not the number: it is built again, and
    // the switch must work (under a new number, or its old one revived).
    let again = env
        .run(&["--json", "switch", s(&env.cfg().join("c1.json"))])
        .ok()
        .json();
    let n = again["number"].as_u64().unwrap();
    assert!(n == 1 || n == 4, "{again}");
    assert_eq!(env.tree(), trees[0]);
    env.run(&["verify", "--store"]).ok();
}

// ---------------------------------------------------------------- 2

#[test]
fn gc_dry_run_deletes_nothing_and_plain_gc_removes_only_unswitched_builds() {
    let env = TestEnv::new();
    for i in 1..=3 {
        env.switch(&config(&env, i));
    }
    let tree = env.tree();
    let gens = generations(&env);
    let objects = store_objects(&env);

    let dry = env
        .run(&["--json", "gc", "--keep", "1", "--dry-run"])
        .ok()
        .json();
    assert_eq!(dry["gc"]["dry_run"], true);
    assert_eq!(dry["gc"]["generations"], json!([1, 2]), "{dry}");
    assert_eq!(dry["gc"]["objects"], 4, "{dry}");
    assert_eq!(generations(&env), gens);
    assert_eq!(store_objects(&env), objects);
    assert_eq!(env.tree(), tree);

    // Built, never switched to: two new objects, no generation.
    let built = config(&env, 9);
    let id = env.run(&["--json", "build", s(&built)]).ok().json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(store_objects(&env), objects + 2);
    assert_eq!(generations(&env), gens);
    // Its id resolves before gc ...
    env.run(&["diff", "3", &id[..12]]).ok();

    let g = env.run(&["--json", "gc"]).ok().json();
    assert_eq!(g["gc"]["generations"], json!([]), "{g}");
    assert_eq!(g["gc"]["objects"], 2, "{g}");
    assert_eq!(generations(&env), gens);
    assert_eq!(store_objects(&env), objects);
    assert_eq!(env.tree(), tree);
    // ... and not after; the config itself still switches (rebuilt).
    env.run(&["diff", "3", &id[..12]]).expect(2);
    let sw = env.run(&["--json", "switch", s(&built)]).ok().json();
    assert_eq!(sw["id"].as_str().unwrap(), id);
    assert_eq!(sw["number"], 4);
    env.run(&["verify", "--store"]).ok();
    // Nothing unreferenced is left: another plain gc frees nothing.
    let g = env.run(&["--json", "gc"]).ok().json();
    assert_eq!(g["gc"]["objects"], 0, "{g}");
}

// ---------------------------------------------------------------- 3

#[test]
fn a_second_mutating_command_is_refused_at_once_naming_the_holder() {
    let env = TestEnv::new();
    env.switch(&config(&env, 1));
    let tree = env.tree();
    let c2 = config(&env, 2);

    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(env.state().join("lock"))
        .unwrap();
    let pid = std::process::id();
    write!(f, "{pid}").unwrap();
    f.flush().unwrap();
    let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();

    for args in [
        vec!["switch", s(&c2)],
        vec!["rollback"],
        vec!["gc"],
        vec!["pin", "1"],
        vec!["build", s(&c2)],
    ] {
        let t = Instant::now();
        let r = env.run(&args).expect(1);
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{args:?} waited for the lock"
        );
        assert!(
            r.stderr.contains(&pid.to_string()),
            "{args:?}: the holder's pid {pid} is not named: {}",
            r.stderr
        );
    }
    assert_eq!(env.tree(), tree);
    assert_eq!(generations(&env), vec![(1, true, false)]);

    drop(lock);
    let r = env.run(&["--json", "switch", s(&c2)]).ok().json();
    assert_eq!(r["number"], 2);
    assert_ne!(env.tree(), tree);
}

// ---------------------------------------------------------------- 4

#[test]
fn verify_and_status_report_drift() {
    let env = TestEnv::new();
    env.switch(&config(&env, 1));
    env.run(&["verify"]).ok();
    let st = env.run(&["--json", "status"]).ok().json();
    assert_eq!(st["drift"], 0, "{st}");
    assert_eq!(st["active"]["number"], 1, "{st}");
    let entries = st["entries"].as_u64().unwrap();
    assert!(entries >= 3, "{st}");

    env.write_root("/etc/gen.conf", "edited\n");
    fs::set_permissions(
        env.at("/etc/common.conf"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::remove_file(env.at("/etc/only-1")).unwrap();
    let tree = env.tree();

    let r = env.run(&["verify"]).expect(1);
    let drifted: Vec<&str> = r
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("drift: "))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert_eq!(
        drifted,
        vec!["/etc/common.conf", "/etc/gen.conf", "/etc/only-1"],
        "{}",
        r.stdout
    );
    let v: Value = env.run(&["--json", "verify"]).expect(1).json();
    assert_eq!(v["ok"], false, "{v}");

    let st = env.run(&["--json", "status"]).ok().json();
    assert_eq!(st["drift"], 3, "{st}");
    assert_eq!(st["entries"].as_u64().unwrap(), entries);
    let text = env.run(&["status"]).ok().stdout;
    assert!(text.contains("drift: 3 of"), "{text}");
    // Reporting changed nothing.
    assert_eq!(env.tree(), tree);
}
