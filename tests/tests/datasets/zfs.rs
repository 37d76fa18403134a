//! Datasets: the zfs backend against the STAND-IN `zfs` command (ZFS cannot
//! run here; see tests/src/bin/zfs-stand-in.rs).

use super::*;

// --------------------------------------------------------------------- zfs

/// The stand-in's calls that change something (every call but `list` and `get`).
pub(crate) fn zfs_calls(env: &TestEnv) -> Vec<String> {
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

pub(crate) fn zfs_run(env: &TestEnv, args: &[&str]) -> Run {
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
