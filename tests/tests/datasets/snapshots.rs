//! Datasets: gc of the snapshots taken at each switch, with their
//! generations.

use super::*;
use crate::zfs::{zfs_calls, zfs_run};

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
