//! A push or pull killed at each named step leaves both sides consistent
//! (a ref never names a generation the remote lacks; the host's state is
//! whole) and a rerun completes, moving only what the killed run had not;
//! and a host rolls back offline after the remote is gone.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use serde_json::{Value, json};
use sysgen_tests::remote::{RemoteDir, build, keygen, moved, trust};
use sysgen_tests::{Run, TestEnv};

fn files(n: usize, tag: &str) -> Value {
    let mut files = serde_json::Map::new();
    for i in 0..n {
        let dir = if i % 2 == 0 { "a" } else { "b" };
        files.insert(
            format!("/srv/{dir}/f{i:02}"),
            json!({ "content": format!("{tag} {i}\n") }),
        );
    }
    json!({ "files": files })
}

fn with_fault(env: &TestEnv, fault: &str, args: &[&str]) -> Run {
    Run::from(
        env.cmd(args)
            .env("SYSGEN_REMOTE_FAULT", fault)
            .output()
            .unwrap(),
    )
}

#[test]
fn a_push_killed_at_each_step_leaves_the_remote_consistent_and_a_rerun_completes() {
    // (fault, what the rerun moves: objects, nodes, manifests, present)
    let cases = [
        ("objects:3", (7, 4, 1, 3)),
        ("nodes:2", (0, 2, 1, 10)),
        ("manifest:1", (0, 0, 0, 10)),
        ("ref:0", (0, 0, 0, 10)),
    ];
    for (fault, rerun) in cases {
        let deployer = TestEnv::new();
        let remote = RemoteDir::new();
        let url = remote.url();
        let public = keygen(&deployer);
        let g = build(&deployer, "c.json", files(10, "v1"));
        let killed = with_fault(&deployer, fault, &["push", &g, &url, "--ref", "hosts/web1"]);
        assert!(
            killed.killed,
            "{fault}: the push was not killed: {killed:?}"
        );
        // No ref yet, and nothing half-written (no temp or lock file).
        assert!(remote.keys_under("hosts").is_empty(), "{fault}");
        assert!(
            remote
                .keys()
                .iter()
                .all(|k| !k.split('/').any(|p| p.starts_with('.'))),
            "{fault}: a temp or lock file was left: {:?}",
            remote.keys()
        );
        // A host finds no ref: a clear "no such ref", nothing else.
        let host = TestEnv::new();
        trust(&host, &public);
        let none = host.run(&["pull", &url, "hosts/web1"]);
        assert_eq!(none.code, Some(2), "{fault}: {}", none.stderr);
        assert!(
            none.stderr.contains("no such ref"),
            "{fault}: {}",
            none.stderr
        );

        let again = deployer
            .run(&["--json", "push", &g, &url, "--ref", "hosts/web1"])
            .ok();
        assert_eq!(moved(&again), rerun, "{fault}: {}", again.stdout);
        assert_eq!(again.json()["seq"], 1, "{fault}");
        host.run(&["pull", &url, "hosts/web1", "--switch"]).ok();
        deployer.run(&["switch", &g]).ok();
        assert_eq!(host.tree(), deployer.tree(), "{fault}");
    }
}

#[test]
fn a_pull_killed_at_each_step_leaves_the_host_whole_and_a_rerun_completes() {
    // A host keeps the objects it receives in memory until one store
    // batch writes them, before the first node: killed among the objects,
    // it has none of them; killed among the nodes, all.
    let cases = [
        ("objects:3", (10, 4, 1, 0)),
        ("nodes:2", (0, 2, 1, 10)),
        ("manifest:1", (0, 0, 0, 10)),
    ];
    let deployer = TestEnv::new();
    let remote = RemoteDir::new();
    let url = remote.url();
    let public = keygen(&deployer);
    let g = build(&deployer, "c.json", files(10, "v1"));
    deployer
        .run(&["push", &g, &url, "--ref", "hosts/web1"])
        .ok();
    deployer.run(&["switch", &g]).ok();
    for (fault, rerun) in cases {
        let host = TestEnv::new();
        trust(&host, &public);
        let tree = host.tree();
        let killed = with_fault(&host, fault, &["pull", &url, "hosts/web1", "--switch"]);
        assert!(
            killed.killed,
            "{fault}: the pull was not killed: {killed:?}"
        );
        assert_eq!(host.tree(), tree, "{fault}: the root changed");
        // The state is whole: its store checks, and no generation is active.
        host.run(&["verify", "--store"]).ok();
        let list = host.run(&["--json", "list"]).ok().json();
        assert_eq!(list["active"], Value::Null, "{fault}: {list}");
        assert_eq!(list["generations"], json!([]), "{fault}: {list}");
        let again = host
            .run(&["--json", "pull", &url, "hosts/web1", "--switch"])
            .ok();
        assert_eq!(moved(&again), rerun, "{fault}: {}", again.stdout);
        assert_eq!(host.tree(), deployer.tree(), "{fault}");
    }
}

#[test]
fn a_host_rolls_back_offline_after_the_remote_is_deleted() {
    let deployer = TestEnv::new();
    let host = TestEnv::new();
    let remote = RemoteDir::new();
    let url = remote.url();
    trust(&host, &keygen(&deployer));
    let g1 = build(&deployer, "c1.json", files(6, "one"));
    let g2 = build(&deployer, "c2.json", files(8, "two"));
    deployer.run(&["switch", &g1]).ok();
    let t1 = deployer.tree();
    deployer.run(&["switch", &g2]).ok();
    let t2 = deployer.tree();

    deployer
        .run(&["push", &g1, &url, "--ref", "hosts/web1"])
        .ok();
    host.run(&["pull", &url, "hosts/web1", "--switch"]).ok();
    assert_eq!(host.tree(), t1);
    deployer
        .run(&["push", &g2, &url, "--ref", "hosts/web1"])
        .ok();
    host.run(&["pull", &url, "hosts/web1", "--switch"]).ok();
    assert_eq!(host.tree(), t2);

    std::fs::remove_dir_all(remote.path()).unwrap();
    let gone = host.run(&["pull", &url, "hosts/web1"]);
    assert_eq!(gone.code, Some(1), "{}", gone.stderr);
    assert!(
        gone.stderr.contains(&url),
        "the error names the remote: {}",
        gone.stderr
    );

    host.run(&["rollback"]).ok();
    assert_eq!(host.tree(), t1, "rollback without the remote");
    host.run(&["switch", &g2]).ok();
    assert_eq!(host.tree(), t2, "forward again without the remote");
}
