//! Datasets (issue 5) through the real binary, on real temp roots:
//! - `directory` datasets on the root's own filesystem (ext4 here) and on a
//!   tmpfs mounted in the root;
//! - `btrfs` datasets on a real btrfs made on a loop device inside the test
//!   (truncate, losetup, mkfs.btrfs, mount), always unmounted and detached
//!   afterwards, also when the test fails;
//! - `zfs` datasets against a STAND-IN `zfs` command (`zfs-stand-in`, see
//!   tests/src/bin/zfs-stand-in.rs): ZFS cannot run here. It records every
//!   call and refuses arguments zfs(8) would not take.
//!
//! Each scenario compares whole trees (`dump_tree`) and the data files'
//! contents at every step.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::{Value, json};
use sysgen_tests::datasets::{
    Backing, Tmpfs, is_read_only, is_subvolume, make_subvolume, zfs_stand_in,
};
use sysgen_tests::{Run, TestEnv, s};

mod refusals;
mod snapshots;
mod zfs;

fn read(env: &TestEnv, p: &str) -> String {
    fs::read_to_string(env.at(p)).unwrap_or_else(|e| panic!("{p}: {e}\n{}", env.tree()))
}

/// The tree without sysgen's retention areas (`.sysgen-data`).
fn tree_outside_keep(env: &TestEnv) -> String {
    env.tree()
        .lines()
        .filter(|l| !l.contains("/.sysgen-data"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn has_step(steps: &[String], needle: &str) -> bool {
    steps.iter().any(|s| s.contains(needle))
}

/// `None` only when the test may skip (see `sysgen_tests::cannot_run`,
/// which already said why).
fn backing(env: &TestEnv, what: &str) -> Option<Backing> {
    Backing::at_srv(env, what)
}

// ------------------------------------------------------------ the lifecycle

fn configs(env: &TestEnv, ty: &str) -> (PathBuf, PathBuf, PathBuf) {
    let data = json!({ "type": ty, "snapshot": true, "mode": "0750" });
    let keep = json!({ "type": ty, "owner": "www-data", "group": "www-data" });
    let c1 = env.config(
        "c1.json",
        json!({
            "datasets": { "/srv/data": data, "/srv/keep": keep },
            "files": { "/srv/data/README": { "content": "managed\n" } }
        }),
    );
    let c1b = env.config(
        "c1b.json",
        json!({
            "datasets": { "/srv/data": data, "/srv/keep": keep },
            "files": { "/srv/data/README": { "content": "managed\n" }, "/etc/motd": { "content": "b\n" } }
        }),
    );
    let c2 = env.config(
        "c2.json",
        json!({
            "datasets": { "/srv/keep": keep },
            "files": { "/etc/motd": { "content": "2\n" } }
        }),
    );
    (c1, c1b, c2)
}

/// Create, snapshot per switch, `rollback --with-data` with a pre-rollback
/// snapshot, rollback without it (contents untouched), removal (detach),
/// rollback (re-attach, contents intact), gc destroying only what no
/// remaining generation has.
fn lifecycle(what: &str) {
    let env = TestEnv::new();
    let Some(_backing) = backing(&env, what) else {
        return;
    };
    let ty = if what == "btrfs" {
        "btrfs"
    } else {
        "directory"
    };
    let btrfs = ty == "btrfs";
    let (c1, c1b, c2) = configs(&env, ty);
    let keep = |rel: &str| env.at(&format!("/srv/.sysgen-data/data/{rel}"));

    // 1. create
    let r = env.run(&["--json", "switch", s(&c1)]).ok();
    let st = r.steps();
    assert!(st[0].starts_with("create dataset /srv/data"), "{st:#?}");
    assert!(st[1].starts_with("create dataset /srv/keep"), "{st:#?}");
    let tree = env.tree();
    for line in [
        "/srv/data dir 0750 0:0",
        "/srv/keep dir 0755 33:33",
        "/srv/data/README file 0644 0:0",
    ] {
        assert!(tree.contains(line), "{line} missing:\n{tree}");
    }
    assert!(!tree.contains(".sysgen-data"), "{tree}");
    if btrfs {
        assert!(is_subvolume(&env.at("/srv/data")) && is_subvolume(&env.at("/srv/keep")));
    }
    env.write_root("/srv/data/db", "v1\n");
    env.write_root("/srv/keep/k", "kept\n");
    let t1 = env.tree();
    env.run(&["verify"]).ok();

    // 2. a switch snapshots /srv/data (snapshot: true), not /srv/keep
    let r = env.run(&["--json", "switch", s(&c1b)]).ok();
    let st = r.steps();
    assert!(
        st[0].starts_with("snapshot dataset /srv/data")
            && st[0].contains("/srv/.sysgen-data/data/snapshots/gen-1, ")
            && st[0].ends_with("(leaving generation 1)"),
        "{st:#?}"
    );
    assert!(!has_step(&st, "snapshot dataset /srv/keep"), "{st:#?}");
    assert_eq!(
        fs::read_to_string(keep("snapshots/gen-1/db")).unwrap(),
        "v1\n"
    );
    assert_eq!(
        fs::read_to_string(keep("snapshots/gen-1/README")).unwrap(),
        "managed\n"
    );
    if btrfs {
        assert!(is_read_only(&keep("snapshots/gen-1")));
    }
    assert_eq!(read(&env, "/srv/data/db"), "v1\n");
    env.write_root("/srv/data/db", "v2\n");

    // 3. rollback --with-data: current contents kept as a snapshot first
    let dry = env
        .run(&["--json", "rollback", "--with-data", "--dry-run"])
        .ok();
    let before = env.tree();
    let r = env.run(&["--json", "rollback", "--with-data"]).ok();
    // The pre-rollback snapshot's name holds the time of the run.
    let masked = |r: &Run| -> Vec<String> {
        r.steps()
            .into_iter()
            .map(|s| match s.find("pre-rollback-2-") {
                Some(i) => format!("{}pre-rollback-2-T", &s[..i]),
                None => s,
            })
            .collect()
    };
    assert_eq!(
        masked(&r),
        masked(&dry),
        "--dry-run did not print the plan that ran"
    );
    assert!(
        has_step(&r.steps(), "restore dataset /srv/data"),
        "{:#?}",
        r.steps()
    );
    assert!(
        has_step(
            &r.steps(),
            "keep the contents of dataset /srv/keep: it has no snapshot of generation 1"
        ),
        "{:#?}",
        r.steps()
    );
    assert_ne!(before, env.tree());
    assert_eq!(
        read(&env, "/srv/data/db"),
        "v1\n",
        "not restored from gen-1"
    );
    let pre: Vec<_> = fs::read_dir(keep("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("pre-rollback-2-"))
        .collect();
    assert_eq!(pre.len(), 1, "one pre-rollback snapshot: {pre:?}");
    assert_eq!(
        fs::read_to_string(keep(&format!("snapshots/{}/db", pre[0]))).unwrap(),
        "v2\n",
        "the contents before the rollback are lost"
    );
    if btrfs {
        assert!(is_read_only(&keep(&format!("snapshots/{}", pre[0]))));
        assert!(is_subvolume(&env.at("/srv/data")));
    }
    assert_eq!(tree_outside_keep(&env), t1, "not generation 1's tree");
    env.run(&["verify"]).ok();

    // 4. rollback without --with-data never touches the contents
    env.write_root("/srv/data/db", "v3\n");
    env.run(&["rollback"]).ok();
    assert_eq!(read(&env, "/srv/data/db"), "v3\n");

    // 5. removal: detached, kept whole
    let r = env.run(&["--json", "switch", s(&c2)]).ok();
    let st = r.steps();
    let last_but_one = &st[st.len() - 2];
    assert!(
        last_but_one.starts_with("detach dataset /srv/data"),
        "{st:#?}"
    );
    assert!(!env.at("/srv/data").exists());
    assert_eq!(fs::read_to_string(keep("detached/db")).unwrap(), "v3\n");
    if btrfs {
        assert!(is_subvolume(&keep("detached")));
    }
    assert_eq!(read(&env, "/srv/keep/k"), "kept\n");
    let st = env.run(&["--json", "status"]).ok().json();
    let data = st["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == "/srv/data")
        .cloned()
        .unwrap();
    assert_eq!(data["state"], "detached", "{st}");
    assert_eq!(data["generations"], json!([1, 2]), "{st}");
    assert!(data["snapshots"].as_array().unwrap().len() >= 3, "{st}");
    let d = env.run(&["diff"]).ok();
    assert!(
        d.stdout.contains(&format!(
            "- /srv/data  dataset ({}, snapshot)",
            if btrfs {
                "btrfs subvolume"
            } else {
                "directory"
            }
        )),
        "{}",
        d.stdout
    );
    let d = env.run(&["--json", "diff"]).ok().json();
    assert_eq!(d["datasets"][0]["change"], "removed", "{d}");
    assert_eq!(d["datasets"].as_array().unwrap().len(), 1, "{d}");
    let list = env.run(&["list"]).ok();
    assert!(
        list.stdout.contains("dataset /srv/data") && list.stdout.contains("detached"),
        "{}",
        list.stdout
    );
    let t3 = env.tree();

    // 6. rollback brings it back, contents intact
    env.run(&["rollback"]).ok();
    assert_eq!(read(&env, "/srv/data/db"), "v3\n");
    assert_eq!(read(&env, "/srv/data/README"), "managed\n");
    assert!(!keep("detached").exists());
    if btrfs {
        assert!(is_subvolume(&env.at("/srv/data")));
    }
    env.run(&["verify"]).ok();

    // 7. remove it again; gc destroys it and its snapshots only once the
    // last generation that has it is deleted
    env.run(&["switch", s(&c2)]).ok();
    let t3b = env.tree();
    assert_eq!(
        t3.lines()
            .filter(|l| !l.contains("/snapshots/"))
            .collect::<Vec<_>>(),
        t3b.lines()
            .filter(|l| !l.contains("/snapshots/"))
            .collect::<Vec<_>>()
    );
    let g = env.run(&["--json", "gc"]).ok().json();
    assert_eq!(
        g["gc"]["datasets"],
        json!([]),
        "gc without flags destroyed data: {g}"
    );
    let g = env
        .run(&["--json", "gc", "--keep", "2", "--dry-run"])
        .ok()
        .json();
    // Generation 2 still has the dataset: only the snapshots taken when
    // generation 1 (collected) was left go (issue 11 item 7), not the data.
    assert_eq!(g["gc"]["generations"], json!([1]), "{g}");
    let gone: Vec<_> = g["gc"]["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["what"].clone(), d["location"].clone()))
        .collect();
    assert_eq!(
        gone,
        [
            (
                json!("snapshot"),
                json!("/srv/.sysgen-data/data/snapshots/gen-1")
            ),
            (
                json!("snapshot"),
                json!("/srv/.sysgen-data/data/snapshots/gen-1.2")
            ),
        ],
        "{g}"
    );
    let dry = env
        .run(&["--json", "gc", "--keep", "1", "--dry-run"])
        .ok()
        .json();
    assert_eq!(env.tree(), t3b, "gc --dry-run changed the root");
    let items = dry["gc"]["datasets"].as_array().unwrap();
    assert!(items.iter().all(|d| d["path"] == "/srv/data"), "{dry}");
    let detached: Vec<_> = items.iter().filter(|d| d["what"] == "dataset").collect();
    assert_eq!(detached.len(), 1, "{dry}");
    assert_eq!(detached[0]["location"], "/srv/.sysgen-data/data/detached");
    assert_eq!(detached[0]["bytes"], 3, "{dry}");
    let snaps = items.iter().filter(|d| d["what"] == "snapshot").count();
    assert!(snaps >= 5, "{dry}");
    let text = env.run(&["gc", "--keep", "1", "--dry-run"]).ok();
    assert!(
        text.stdout
            .contains("would delete detached dataset /srv/data")
            && text.stdout.contains(
                "would delete snapshot /srv/.sysgen-data/data/snapshots/gen-1 of dataset /srv/data"
            ),
        "{}",
        text.stdout
    );
    let done = env.run(&["--json", "gc", "--keep", "1"]).ok().json();
    assert_eq!(
        done["gc"]["datasets"], dry["gc"]["datasets"],
        "gc did not do what --dry-run said"
    );
    let want: Vec<&str> = t3b
        .lines()
        .filter(|l| !l.contains("/.sysgen-data"))
        .collect();
    assert_eq!(
        env.tree().lines().collect::<Vec<_>>(),
        want,
        "gc destroyed too much or too little"
    );
    assert_eq!(read(&env, "/srv/keep/k"), "kept\n");
    let st = env.run(&["--json", "status"]).ok().json();
    assert_eq!(
        st["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].clone())
            .collect::<Vec<_>>(),
        [json!("/srv/keep")],
        "{st}"
    );
}

#[test]
fn directory_lifecycle_on_the_root_filesystem() {
    lifecycle("ext4");
}

#[test]
fn directory_lifecycle_on_tmpfs() {
    lifecycle("tmpfs");
}

#[test]
fn btrfs_lifecycle_on_a_loop_device() {
    lifecycle("btrfs");
}

// ------------------------------------------------------------------ adopt

fn adopt(what: &str) {
    let env = TestEnv::new();
    let Some(_backing) = backing(&env, what) else {
        return;
    };
    let ty = if what == "btrfs" {
        "btrfs"
    } else {
        "directory"
    };
    // The state directory goes there: comparable trees before and after.
    fs::create_dir_all(env.at("/var/lib")).unwrap();
    if ty == "btrfs" {
        make_subvolume(&env.at("/srv/data"));
    } else {
        fs::create_dir(env.at("/srv/data")).unwrap();
    }
    env.write_root("/srv/data/old.db", "the admin's data\n");
    fs::set_permissions(env.at("/srv/data"), fs::Permissions::from_mode(0o700)).unwrap();
    let before = env.tree();
    let c = env.config(
        "c.json",
        json!({ "datasets": { "/srv/data": { "type": ty, "mode": "0750", "snapshot": true } } }),
    );
    let bare = env.config(
        "bare.json",
        json!({ "files": { "/etc/motd": { "content": "m\n" } } }),
    );
    let r = env.run(&["--json", "switch", s(&c)]).ok();
    assert!(
        has_step(&r.steps(), "adopt dataset /srv/data"),
        "{:#?}",
        r.steps()
    );
    assert!(!has_step(&r.steps(), "create dataset"), "{:#?}", r.steps());
    assert_eq!(read(&env, "/srv/data/old.db"), "the admin's data\n");
    assert_eq!(
        env.tree(),
        before.replace("/srv/data dir 0700", "/srv/data dir 0750"),
        "adopting changed more than the declared mode"
    );
    // Leaving the configuration, an adopted dataset stays where it was,
    // with its contents and its original mode.
    let r = env.run(&["--json", "switch", s(&bare)]).ok();
    assert!(
        has_step(&r.steps(), "stop managing dataset /srv/data"),
        "{:#?}",
        r.steps()
    );
    assert_eq!(read(&env, "/srv/data/old.db"), "the admin's data\n");
    assert!(env.tree().contains("/srv/data dir 0700"), "{}", env.tree());
    // gc never destroys it (only its snapshots, once no generation has it).
    let g = env.run(&["--json", "gc", "--keep", "1"]).ok().json();
    assert!(
        g["gc"]["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["what"] == "snapshot"),
        "{g}"
    );
    assert_eq!(read(&env, "/srv/data/old.db"), "the admin's data\n");
    if ty == "btrfs" {
        assert!(is_subvolume(&env.at("/srv/data")));
    }
}

#[test]
fn directory_adopt_keeps_contents() {
    adopt("ext4");
}

#[test]
fn btrfs_adopt_keeps_contents() {
    adopt("btrfs");
}
