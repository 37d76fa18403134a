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

// ------------------------------------------------------ errors before any change

/// The switch fails with exit `code` and a message containing `needle`,
/// and changes nothing: same tree, no new generation.
#[track_caller]
fn refused(env: &TestEnv, args: &[&str], code: i32, needle: &str) {
    // The state directory's parents, as a first `list` used to make them:
    // a first switch makes them, refused or not, and they are not at stake.
    fs::create_dir_all(env.state()).unwrap();
    let gens = generations(env);
    let before = env.tree();
    let r = env.run(args).expect(code);
    assert!(
        r.stderr.contains(needle),
        "{needle:?} not in:\n{}",
        r.stderr
    );
    assert_eq!(env.tree(), before, "a refused switch changed the root");
    assert_eq!(generations(env), gens);
}

/// The generations per `list --json`; none before the first switch, when
/// there is no state yet and `list` says so (exit 1).
fn generations(env: &TestEnv) -> serde_json::Value {
    let r = env.run(&["--json", "list"]);
    if r.code == Some(1) && r.stderr.contains("no sysgen state here") {
        return json!([]);
    }
    r.ok().json()["generations"].clone()
}

#[test]
fn btrfs_on_a_filesystem_that_is_not_btrfs_is_refused() {
    let env = TestEnv::new();
    fs::create_dir_all(env.at("/srv")).unwrap();
    let c = env.config(
        "c.json",
        json!({ "datasets": { "/srv/data": { "type": "btrfs" } } }),
    );
    refused(
        &env,
        &["switch", s(&c)],
        1,
        "type btrfs needs a btrfs filesystem, but /srv is on",
    );
}

#[test]
fn a_plain_directory_is_not_adopted_as_a_subvolume() {
    let env = TestEnv::new();
    let Some(_b) = backing(&env, "btrfs") else {
        return;
    };
    fs::create_dir(env.at("/srv/data")).unwrap();
    env.write_root("/srv/data/x", "x\n");
    let c = env.config(
        "c.json",
        json!({ "datasets": { "/srv/data": { "type": "btrfs" } } }),
    );
    refused(
        &env,
        &["switch", s(&c)],
        1,
        "is a plain directory on btrfs, not a btrfs subvolume",
    );
}

#[test]
fn a_missing_tool_is_refused() {
    let env = TestEnv::new();
    let Some(_b) = backing(&env, "btrfs") else {
        return;
    };
    let c = env.config(
        "c.json",
        json!({ "datasets": { "/srv/data": { "type": "btrfs" } } }),
    );
    refused(
        &env,
        &["--btrfs", "/nonexistent/btrfs", "switch", s(&c)],
        1,
        "btrfs datasets need the `btrfs` command, which is not installed",
    );
    let z = env.config(
        "z.json",
        json!({ "datasets": { "/srv/z": { "type": "zfs", "name": "tank/z" } } }),
    );
    refused(
        &env,
        &["--zfs", "/nonexistent/zfs", "switch", s(&z)],
        1,
        "install zfsutils-linux",
    );
}

#[test]
fn a_file_in_the_way_is_a_name_clash() {
    let env = TestEnv::new();
    env.write_root("/srv/data", "a file\n");
    let c = env.config(
        "c.json",
        json!({ "datasets": { "/srv/data": { "type": "directory" } } }),
    );
    refused(
        &env,
        &["switch", s(&c)],
        1,
        "/srv/data: is a file on the root, where a dataset (directory) must go (name clash)",
    );
}

#[test]
fn a_busy_mount_is_refused_before_any_change() {
    let env = TestEnv::new();
    let c = env.config(
        "c.json",
        json!({ "datasets": { "/srv/data": { "type": "directory" } } }),
    );
    let bare = env.config(
        "bare.json",
        json!({ "files": { "/etc/motd": { "content": "m\n" } } }),
    );
    env.run(&["switch", s(&c)]).ok();
    let busy = Tmpfs::mount(&env.at("/srv/data"));
    fs::write(busy.mnt.join("live"), "in use\n").unwrap();
    refused(&env, &["switch", s(&bare)], 1, "busy mount");
    drop(busy);
    env.run(&["switch", s(&bare)]).ok();
}

#[test]
fn nested_datasets_are_invalid() {
    let env = TestEnv::new();
    let c = env.config(
        "c.json",
        json!({ "datasets": { "/srv/a": { "type": "directory" }, "/srv/a/b": { "type": "directory" } } }),
    );
    refused(
        &env,
        &["switch", s(&c)],
        2,
        "datasets.\u{2f}srv/a/b: lies inside the dataset /srv/a",
    );
}

// --------------------------------------------------------------------- zfs

/// The stand-in's calls that change something (every call but `list` and `get`).
fn zfs_calls(env: &TestEnv) -> Vec<String> {
    let log = fs::read_to_string(env.dir.path().join("zfs/calls.log")).unwrap_or_default();
    assert!(
        !log.contains("INVALID"),
        "sysgen called zfs with arguments zfs(8) refuses:\n{log}"
    );
    log.lines()
        .filter(|l| !l.starts_with("zfs list ") && !l.starts_with("zfs get "))
        .map(|l| l.replace(env.root().to_str().unwrap(), "<root>"))
        .collect()
}

fn zfs_run(env: &TestEnv, args: &[&str]) -> Run {
    let zfs = zfs_stand_in();
    let mut all = vec!["--zfs", zfs.to_str().unwrap()];
    all.extend(args);
    let out = env
        .cmd(&all)
        .env("ZFS_STAND_IN_DIR", env.dir.path().join("zfs"))
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        killed: false,
    }
}

#[test]
fn zfs_backend_against_the_zfs_stand_in() {
    let env = TestEnv::new();
    let c1 = env.config(
        "c1.json",
        json!({ "datasets": { "/srv/db": { "type": "zfs", "name": "tank/db", "snapshot": true, "mode": "0750" } } }),
    );
    let c2 = env.config(
        "c2.json",
        json!({ "files": { "/etc/motd": { "content": "m\n" } } }),
    );

    zfs_run(&env, &["switch", s(&c1)]).ok();
    assert_eq!(
        zfs_calls(&env),
        ["zfs create -p -o mountpoint=<root>/srv/db tank/db"]
    );
    assert!(
        env.tree().contains("/srv/db dir 0750 0:0"),
        "{}",
        env.tree()
    );
    env.write_root("/srv/db/rows", "1\n");
    let t1 = env.tree();

    zfs_run(&env, &["switch", s(&c2)]).ok();
    assert_eq!(
        zfs_calls(&env)[1..],
        [
            "zfs snapshot tank/db@sysgen-gen-1",
            "zfs set mountpoint=none tank/db",
            "zfs rename tank/db tank/db-sysgen-detached",
        ]
    );
    assert!(!env.at("/srv/db").exists(), "{}", env.tree());
    let st = zfs_run(&env, &["--json", "status"]).ok().json();
    assert_eq!(st["datasets"][0]["state"], "detached", "{st}");
    assert_eq!(
        st["datasets"][0]["location"], "tank/db-sysgen-detached",
        "{st}"
    );

    zfs_run(&env, &["rollback"]).ok();
    assert_eq!(
        zfs_calls(&env)[4..],
        [
            "zfs rename tank/db-sysgen-detached tank/db",
            "zfs set mountpoint=<root>/srv/db tank/db",
        ]
    );
    // Now with its snapshot shown in `.zfs` (as zfs shows it); otherwise intact.
    let without_zfs_ctl = |t: String| {
        t.lines()
            .filter(|l| !l.contains("/.zfs"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        without_zfs_ctl(env.tree()),
        t1,
        "the dataset did not come back intact"
    );
    assert_eq!(read(&env, "/srv/db/.zfs/snapshot/sysgen-gen-1/rows"), "1\n");
    assert_eq!(read(&env, "/srv/db/rows"), "1\n");

    zfs_run(&env, &["switch", s(&c2)]).ok();
    let dry = zfs_run(&env, &["--json", "gc", "--keep", "1", "--dry-run"])
        .ok()
        .json();
    let items: Vec<(String, String)> = dry["gc"]["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["what"].as_str().unwrap().into(),
                d["location"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        items.contains(&("dataset".into(), "tank/db-sysgen-detached".into())),
        "{dry}"
    );
    let n = zfs_calls(&env).len();
    zfs_run(&env, &["gc", "--keep", "1"]).ok();
    let calls = zfs_calls(&env);
    assert_eq!(
        calls.last().unwrap(),
        "zfs destroy -r tank/db-sysgen-detached",
        "{calls:#?}"
    );
    assert!(
        calls[n..].iter().all(|c| c.starts_with("zfs destroy")),
        "{calls:#?}"
    );
    let state: Value =
        serde_json::from_slice(&fs::read(env.dir.path().join("zfs/state.json")).unwrap()).unwrap();
    assert_eq!(state["datasets"], json!({ "tank": "none" }), "{state}");
    assert_eq!(state["snapshots"], json!([]), "{state}");
}

#[test]
fn zfs_name_clash_and_adoption() {
    let env = TestEnv::new();
    let zdir = env.dir.path().join("zfs");
    fs::create_dir_all(&zdir).unwrap();
    let mine = env.at("/srv/mine");
    fs::write(
        zdir.join("state.json"),
        serde_json::to_vec(&json!({
            "datasets": { "tank": "none", "tank/other": "/elsewhere", "tank/mine": mine },
            "snapshots": []
        }))
        .unwrap(),
    )
    .unwrap();
    fs::create_dir_all(&mine).unwrap();
    fs::write(mine.join("data"), "already there\n").unwrap();
    let c = env.config(
        "c.json",
        json!({ "datasets": { "/srv/x": { "type": "zfs", "name": "tank/other" } } }),
    );
    // The state directory's parents, as a first `list` used to make them:
    // a first switch makes them, refused or not, and they are not at stake.
    fs::create_dir_all(env.state()).unwrap();
    let before = env.tree();
    let r = zfs_run(&env, &["switch", s(&c)]).expect(1);
    assert!(
        r.stderr
            .contains("tank/other already exists with mountpoint /elsewhere (name clash)"),
        "{}",
        r.stderr
    );
    assert_eq!(env.tree(), before);
    assert_eq!(zfs_calls(&env), Vec::<String>::new());

    let a = env.config(
        "a.json",
        json!({ "datasets": { "/srv/mine": { "type": "zfs", "name": "tank/mine" } } }),
    );
    let r = zfs_run(&env, &["--json", "switch", s(&a)]).ok();
    assert!(
        has_step(&r.steps(), "adopt dataset /srv/mine"),
        "{:#?}",
        r.steps()
    );
    assert_eq!(
        zfs_calls(&env),
        Vec::<String>::new(),
        "adoption changed the dataset"
    );
    assert_eq!(read(&env, "/srv/mine/data"), "already there\n");
}

#[test]
fn zfs_rollback_with_data_against_the_zfs_stand_in() {
    let env = TestEnv::new();
    let ds = json!({ "type": "zfs", "name": "tank/db", "snapshot": true });
    let c1 = env.config("c1.json", json!({ "datasets": { "/srv/db": ds } }));
    let c1b = env.config(
        "c1b.json",
        json!({ "datasets": { "/srv/db": ds }, "files": { "/etc/motd": { "content": "b\n" } } }),
    );
    zfs_run(&env, &["switch", s(&c1)]).ok();
    env.write_root("/srv/db/rows", "v1\n");
    zfs_run(&env, &["switch", s(&c1b)]).ok();
    env.write_root("/srv/db/rows", "v2\n");
    env.write_root("/srv/db/new-since", "x\n");
    let n = zfs_calls(&env).len();
    let r = zfs_run(&env, &["--json", "rollback", "--with-data"]).ok();
    assert!(
        has_step(
            &r.steps(),
            "restore dataset /srv/db (zfs dataset tank/db) from snapshot tank/db@sysgen-gen-1"
        ),
        "{:#?}",
        r.steps()
    );
    let calls = zfs_calls(&env);
    assert_eq!(calls.len(), n + 2, "{calls:#?}");
    assert_eq!(calls[n], "zfs snapshot tank/db@sysgen-gen-2");
    assert!(
        calls[n + 1].starts_with("zfs snapshot tank/db@sysgen-pre-rollback-2-"),
        "{calls:#?}"
    );
    assert_eq!(read(&env, "/srv/db/rows"), "v1\n", "not restored");
    assert!(!env.at("/srv/db/new-since").exists());
    // The contents before the rollback are in the pre-rollback snapshot.
    let pre = calls[n + 1].trim_start_matches("zfs snapshot tank/db@");
    assert_eq!(
        read(&env, &format!("/srv/db/.zfs/snapshot/{pre}/rows")),
        "v2\n"
    );
    assert_eq!(
        read(&env, &format!("/srv/db/.zfs/snapshot/{pre}/new-since")),
        "x\n"
    );
    zfs_run(&env, &["verify"]).ok();

    // Back to a generation whose dataset is detached now: its snapshots
    // went with it; it is re-attached, then restored.
    env.write_root("/srv/db/rows", "v3\n");
    let c2 = env.config(
        "c2.json",
        json!({ "files": { "/etc/motd": { "content": "2\n" } } }),
    );
    zfs_run(&env, &["switch", s(&c2)]).ok();
    assert!(!env.at("/srv/db").exists());
    let n = zfs_calls(&env).len();
    zfs_run(&env, &["rollback", "--with-data", "--to", "1"]).ok();
    let calls = zfs_calls(&env);
    assert_eq!(
        calls[n], "zfs rename tank/db-sysgen-detached tank/db",
        "{calls:#?}"
    );
    assert!(
        calls[n + 2].starts_with("zfs snapshot tank/db@sysgen-pre-rollback-3-"),
        "{calls:#?}"
    );
    // gen-1.2 was taken as generation 1 was left with v3 in it.
    assert_eq!(read(&env, "/srv/db/rows"), "v3\n");
}

// ------------------------------------------- gc of per-switch snapshots

/// The pinned clock of these runs: a day apart from one another.
const T0: i64 = 1_700_000_000;
const GRACE: i64 = 7 * 24 * 60 * 60;

fn run_at(env: &TestEnv, now: i64, args: &[&str]) -> Run {
    Run::from(
        env.cmd(args)
            .env("SYSGEN_NOW", now.to_string())
            .output()
            .unwrap(),
    )
}

/// The snapshots in `/srv/db`'s retention area, sorted.
fn snapshots_on_disk(env: &TestEnv, btrfs: bool) -> Vec<String> {
    let dir = env.at("/srv/.sysgen-data/db/snapshots");
    let mut names: Vec<String> = match fs::read_dir(&dir) {
        Ok(d) => d
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    if btrfs {
        for n in &names {
            assert!(is_subvolume(&dir.join(n)), "{n} is not a subvolume");
        }
    }
    names
}

/// The snapshots `status` records for `/srv/db`, sorted.
fn snapshots_recorded(env: &TestEnv) -> Vec<String> {
    let st = env.run(&["--json", "status"]).ok().json();
    let mut names: Vec<String> = st["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["path"] == "/srv/db")
        .flat_map(|d| d["snapshots"].as_array().unwrap().clone())
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// A snapshotted dataset switched through five generations keeps one
/// snapshot per switch; `gc --keep 2` destroys exactly those of the
/// generations it collects (dry-run first: listed with sizes, nothing
/// destroyed), rollback --with-data to a kept generation still works, and
/// the pre-rollback and superseded snapshots go only after the grace.
fn snapshots_go_with_their_generations(what: &str) {
    let env = TestEnv::new();
    let Some(_backing) = backing(&env, what) else {
        return;
    };
    let btrfs = what == "btrfs";
    let ty = if btrfs { "btrfs" } else { "directory" };
    let ds = json!({ "/srv/db": { "type": ty, "snapshot": true } });
    let cfg = |i: u32| {
        env.config(
            &format!("c{i}.json"),
            json!({ "datasets": ds, "files": { "/etc/motd": { "content": format!("{i}\n") } } }),
        )
    };
    let snap = |n: &str| format!("/srv/.sysgen-data/db/snapshots/{n}");
    let mut now = T0;
    for i in 1..=5 {
        now += 60;
        run_at(&env, now, &["switch", s(&cfg(i))]).ok();
        env.write_root("/srv/db/v", &format!("{i}\n"));
    }
    // 6. back to generation 4 with its data: generation 5's contents are
    // kept twice (gen-5, taken when leaving it, and pre-rollback-5-T6).
    let t6 = now + 60;
    run_at(&env, t6, &["rollback", "--to", "4", "--with-data"]).ok();
    assert_eq!(read(&env, "/srv/db/v"), "4\n");
    env.write_root("/srv/db/v", "4b\n");
    let pre5 = format!("pre-rollback-5-{t6}");
    let all = ["gen-1", "gen-2", "gen-3", "gen-4", "gen-5", &pre5];
    assert_eq!(snapshots_on_disk(&env, btrfs), all);
    assert_eq!(snapshots_recorded(&env), all);

    // 7. gc --keep 2 keeps 4 (active) and 5; it collects 1, 2 and 3, and
    // with them exactly their snapshots. First the dry run.
    let t7 = t6 + 60;
    let before = env.tree();
    let dry = run_at(&env, t7, &["--json", "gc", "--keep", "2", "--dry-run"])
        .ok()
        .json();
    assert_eq!(dry["gc"]["generations"], json!([1, 2, 3]), "{dry}");
    let listed: Vec<(String, String, u64)> = dry["gc"]["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["path"], "/srv/db", "{dry}");
            (
                d["what"].as_str().unwrap().to_owned(),
                d["location"].as_str().unwrap().to_owned(),
                d["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, String, u64)> = (1..=3)
        .map(|i| ("snapshot".to_owned(), snap(&format!("gen-{i}")), 2))
        .collect();
    assert_eq!(listed, want, "{dry}");
    let text = run_at(&env, t7, &["gc", "--keep", "2", "--dry-run"]).ok();
    for i in 1..=3 {
        let line = format!(
            "would delete snapshot {} of dataset /srv/db (2 B)",
            snap(&format!("gen-{i}"))
        );
        assert!(text.stdout.contains(&line), "{line}:\n{}", text.stdout);
    }
    assert_eq!(env.tree(), before, "gc --dry-run changed the root");
    assert_eq!(snapshots_on_disk(&env, btrfs), all);
    assert_eq!(snapshots_recorded(&env), all);

    let done = run_at(&env, t7, &["--json", "gc", "--keep", "2"])
        .ok()
        .json();
    assert_eq!(
        done["gc"]["datasets"], dry["gc"]["datasets"],
        "gc did not do what --dry-run said"
    );
    let left = ["gen-4", "gen-5", &pre5];
    assert_eq!(snapshots_on_disk(&env, btrfs), left);
    assert_eq!(snapshots_recorded(&env), left);
    assert_eq!(read(&env, "/srv/db/v"), "4b\n", "gc touched the dataset");

    // 8. rollback --with-data to kept generation 5 restores gen-5.
    let t8 = t7 + 60;
    run_at(&env, t8, &["rollback", "--to", "5", "--with-data"]).ok();
    assert_eq!(read(&env, "/srv/db/v"), "5\n");
    let pre4 = format!("pre-rollback-4-{t8}");
    let left = ["gen-4", "gen-4.2", "gen-5", &pre4, &pre5];
    assert_eq!(snapshots_on_disk(&env, btrfs), left);

    // 9. The grace: nothing goes inside it; gen-4 (superseded by gen-4.2,
    // which rollback --with-data to 4 would restore) and the pre-rollback
    // snapshots each go once it is over, counted from when each was taken.
    let gc_at = |now: i64| -> Vec<String> {
        let g = run_at(&env, now, &["--json", "gc"]).ok().json();
        assert_eq!(g["gc"]["generations"], json!([]), "{g}");
        g["gc"]["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["location"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(gc_at(t8 + 60), Vec::<String>::new());
    // gen-4 was taken at t6 - 60.
    assert_eq!(gc_at(t6 - 60 + GRACE), [snap("gen-4")]);
    assert_eq!(gc_at(t6 + GRACE - 1), Vec::<String>::new());
    assert_eq!(gc_at(t6 + GRACE), [snap(&pre5)]);
    assert_eq!(snapshots_on_disk(&env, btrfs), ["gen-4.2", "gen-5", &pre4]);
    assert_eq!(gc_at(t8 + GRACE), [snap(&pre4)]);
    let left = ["gen-4.2", "gen-5"];
    assert_eq!(snapshots_on_disk(&env, btrfs), left);
    assert_eq!(snapshots_recorded(&env), left);

    // 10. The needed snapshots still restore.
    run_at(&env, t8 + GRACE, &["rollback", "--to", "4", "--with-data"]).ok();
    assert_eq!(read(&env, "/srv/db/v"), "4b\n");
    env.run(&["verify"]).ok();
}

#[test]
fn btrfs_snapshots_go_with_their_generations() {
    snapshots_go_with_their_generations("btrfs");
}

#[test]
fn directory_snapshots_go_with_their_generations() {
    snapshots_go_with_their_generations("ext4");
}

/// A zfs dataset's snapshots of a collected generation go also while the
/// dataset is detached (its snapshots were renamed with it), and only those.
#[test]
fn zfs_snapshots_of_collected_generations_go_while_detached() {
    let env = TestEnv::new();
    let ds = json!({ "/srv/db": { "type": "zfs", "name": "tank/db", "snapshot": true } });
    let c1 = env.config("c1.json", json!({ "datasets": ds }));
    let c1b = env.config(
        "c1b.json",
        json!({ "datasets": ds, "files": { "/etc/motd": { "content": "b\n" } } }),
    );
    let c2 = env.config(
        "c2.json",
        json!({ "files": { "/etc/motd": { "content": "2\n" } } }),
    );
    for c in [&c1, &c1b, &c2] {
        zfs_run(&env, &["switch", s(c)]).ok();
    }
    let n = zfs_calls(&env).len();
    let dry = zfs_run(&env, &["--json", "gc", "--keep", "2", "--dry-run"])
        .ok()
        .json();
    assert_eq!(zfs_calls(&env).len(), n, "--dry-run changed something");
    let items: Vec<_> = dry["gc"]["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["what"].clone())
        .collect();
    assert_eq!(items, [json!("snapshot")], "{dry}");
    zfs_run(&env, &["gc", "--keep", "2"]).ok();
    assert_eq!(
        zfs_calls(&env)[n..],
        ["zfs destroy tank/db-sysgen-detached@sysgen-gen-1"]
    );
    let state: Value =
        serde_json::from_slice(&fs::read(env.dir.path().join("zfs/state.json")).unwrap()).unwrap();
    assert_eq!(
        state["snapshots"],
        json!(["tank/db-sysgen-detached@sysgen-gen-2"]),
        "{state}"
    );
}
