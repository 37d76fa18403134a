//! Push and pull through a `file://` remote and over http: two scratch
//! roots, the real binary, whole trees compared; only missing objects
//! move, counted exactly.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::collections::BTreeSet;

use serde_json::{Value, json};
use sysgen_tests::TestEnv;
use sysgen_tests::remote::{RemoteDir, build, files, keygen, moved, object_key, trust};

fn contents(n: usize, changed: Option<usize>) -> BTreeSet<String> {
    (0..n)
        .map(|i| match changed {
            Some(c) if c == i => format!("file {i}, changed\n"),
            _ => format!("file {i}\n"),
        })
        .map(|c| object_key(c.as_bytes()))
        .collect()
}

struct World {
    deployer: TestEnv,
    host: TestEnv,
    remote: RemoteDir,
}

impl World {
    fn new() -> World {
        let w = World {
            deployer: TestEnv::new(),
            host: TestEnv::new(),
            remote: RemoteDir::new(),
        };
        let public = keygen(&w.deployer);
        // The host has a state of its own (an empty one) to trust the key in.
        trust(&w.host, &public);
        w
    }

    fn url(&self) -> String {
        self.remote.url()
    }
}

#[test]
fn push_then_pull_moves_only_what_is_missing_and_the_trees_match() {
    let w = World::new();
    let url = w.url();
    let g1 = build(&w.deployer, "c1.json", files(100, None, ""));

    let p = w
        .deployer
        .run(&["--json", "push", &g1, &url, "--ref", "hosts/web1"])
        .ok();
    // Two directories under /srv: nodes for /, /srv, /srv/a, /srv/b.
    assert_eq!(moved(&p), (100, 4, 1, 0), "{}", p.stdout);
    assert_eq!(p.json()["seq"], 1);
    // The remote holds exactly the closure, its signature and the ref.
    assert_eq!(
        w.remote.keys_under("objects"),
        contents(100, None).into_iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(w.remote.keys_under("nodes").len(), 4);
    assert_eq!(
        w.remote.keys_under("manifests"),
        BTreeSet::from([format!("manifests/{g1}")])
    );
    assert_eq!(
        w.remote.keys_under("hosts"),
        BTreeSet::from(["hosts/web1".to_owned()])
    );
    assert_eq!(w.remote.keys_under("signatures").len(), 1);
    assert_eq!(
        w.remote.keys().len(),
        100 + 4 + 1 + 1 + 1,
        "{:?}",
        w.remote.keys()
    );

    // Pushing it again moves nothing but the ref.
    let again = w
        .deployer
        .run(&["--json", "push", &g1, &url, "--ref", "hosts/web1"])
        .ok();
    assert_eq!(moved(&again), (0, 0, 0, 100));
    assert_eq!(again.json()["seq"], 2);

    let pulled = w
        .host
        .run(&["--json", "pull", &url, "hosts/web1", "--switch"])
        .ok();
    assert_eq!(moved(&pulled), (100, 4, 1, 0), "{}", pulled.stdout);
    assert_eq!(pulled.json()["switched"], 1);
    w.deployer.run(&["switch", &g1]).ok();
    assert_eq!(w.host.tree(), w.deployer.tree());

    // A 1% change: one file's content. One object, and the nodes on its
    // path (/srv/b, /srv, /), move each way; the other 99 stay.
    let g2 = build(&w.deployer, "c2.json", files(100, Some(51), ""));
    let p2 = w
        .deployer
        .run(&["--json", "push", &g2, &url, "--ref", "hosts/web1"])
        .ok();
    assert_eq!(moved(&p2), (1, 3, 1, 99), "{}", p2.stdout);
    assert_eq!(
        p2.json()["moved"]["bytes"].as_u64().map(|b| b > 0),
        Some(true)
    );
    let pulled2 = w
        .host
        .run(&["--json", "pull", &url, "hosts/web1", "--switch"])
        .ok();
    assert_eq!(moved(&pulled2), (1, 3, 1, 99), "{}", pulled2.stdout);
    w.deployer.run(&["switch", &g2]).ok();
    assert_eq!(w.host.tree(), w.deployer.tree());
    // The remote: both generations' objects, 101 in all.
    assert_eq!(
        w.remote.keys_under("objects"),
        contents(100, None)
            .union(&contents(100, Some(51)))
            .cloned()
            .collect::<BTreeSet<_>>()
    );

    // The ref's history, newest first: forward and back are both moves.
    let doc: Value =
        serde_json::from_slice(&std::fs::read(w.remote.path().join("hosts/web1")).unwrap())
            .unwrap();
    assert_eq!(doc["seq"], 3);
    assert_eq!(doc["generation"], g2.as_str());
    let history: Vec<(u64, String)> = doc["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["seq"].as_u64().unwrap(),
                h["generation"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(history, vec![(2, g1.clone()), (1, g1.clone())]);
    let back = w
        .deployer
        .run(&["--json", "push", &g1, &url, "--ref", "hosts/web1"])
        .ok();
    assert_eq!(moved(&back), (0, 0, 0, 100));
    w.host.run(&["pull", &url, "hosts/web1", "--switch"]).ok();
    w.deployer.run(&["switch", &g1]).ok();
    assert_eq!(w.host.tree(), w.deployer.tree());
}

#[test]
fn pull_over_http_from_a_web_server_publishing_the_remote() {
    let w = World::new();
    let g1 = build(&w.deployer, "c1.json", files(10, None, ""));
    w.deployer
        .run(&["push", &g1, &w.url(), "--ref", "channels/stable"])
        .ok();
    let server = w.remote.serve();
    let http = server.url("/pub");
    let pulled = w
        .host
        .run(&["--json", "pull", &http, "channels/stable", "--switch"])
        .ok();
    assert_eq!(moved(&pulled), (10, 4, 1, 0), "{}", pulled.stdout);
    w.deployer.run(&["switch", &g1]).ok();
    assert_eq!(w.host.tree(), w.deployer.tree());
    // Read-only: a push there is refused, naming the remote.
    let refused = w
        .deployer
        .run(&["push", &g1, &http, "--ref", "channels/stable"]);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(refused.stderr.contains("read-only"), "{}", refused.stderr);
    // A ref the server does not have: exit 2, naming it.
    let none = w.host.run(&["pull", &http, "channels/beta"]);
    assert_eq!(none.code, Some(2), "{}", none.stderr);
    assert!(none.stderr.contains("channels/beta"), "{}", none.stderr);
}

#[test]
fn bad_remote_urls_and_ref_names_exit_2_and_change_nothing() {
    let w = World::new();
    let g1 = build(&w.deployer, "c1.json", files(2, None, ""));
    let x = w.remote.dir.path().join("x");
    let x_url = format!("file://{}", x.display());
    for (args, needle) in [
        (
            vec!["push", &g1, "nowhere", "--ref", "hosts/a"],
            "not a remote URL",
        ),
        (
            vec!["push", &g1, "file://relative", "--ref", "hosts/a"],
            "file:///",
        ),
        (vec!["push", &g1, "gopher://x/y"], "no gopher:// transport"),
        (vec!["push", &g1, &x_url, "--ref", "tags/a"], "not a ref"),
        (
            vec!["push", &g1, &x_url, "--ref", "hosts/../a"],
            "not a ref",
        ),
        (vec!["push", "999", &x_url], "no generation 999"),
    ] {
        let args: Vec<&str> = args.into_iter().collect();
        let r = w.deployer.run(&args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    // Nothing was created, not even the remote's directory.
    assert!(!x.exists());
}

#[test]
fn copy_moves_a_signed_ref_and_only_what_the_other_remote_lacks() {
    let w = World::new();
    let url = w.url();
    let g1 = build(&w.deployer, "c1.json", files(10, None, ""));
    w.deployer
        .run(&["push", &g1, &url, "--ref", "hosts/web1"])
        .ok();
    let mirror = RemoteDir::new();
    let murl = mirror.url();
    let c = w
        .deployer
        .run(&["--json", "copy", &url, &murl, "hosts/web1"])
        .ok();
    assert_eq!(moved(&c), (10, 4, 1, 0), "{}", c.stdout);
    assert_eq!(c.json()["moved_ref"], true);
    // The mirror holds exactly what the remote holds, byte for byte.
    assert_eq!(mirror.keys(), w.remote.keys());
    for k in mirror.keys() {
        assert_eq!(
            std::fs::read(mirror.path().join(&k)).unwrap(),
            std::fs::read(w.remote.path().join(&k)).unwrap(),
            "{k}"
        );
    }
    let again = w
        .deployer
        .run(&["--json", "copy", &url, &murl, "hosts/web1"])
        .ok();
    assert_eq!(moved(&again), (0, 0, 0, 10));
    assert_eq!(again.json()["moved_ref"], false);
    w.host.run(&["pull", &murl, "hosts/web1", "--switch"]).ok();
    w.deployer.run(&["switch", &g1]).ok();
    assert_eq!(w.host.tree(), w.deployer.tree());

    // Copying an older version over a newer one is refused.
    let g2 = build(&w.deployer, "c2.json", files(10, Some(3), ""));
    w.deployer
        .run(&["push", &g2, &url, "--ref", "hosts/web1"])
        .ok();
    let back = w.deployer.run(&["copy", &murl, &url, "hosts/web1"]);
    assert_eq!(back.code, Some(2), "{}", back.stderr);
    assert!(back.stderr.contains("move it back"), "{}", back.stderr);

    // A host that does not trust the signer copies nothing.
    let stranger = TestEnv::new();
    keygen(&stranger);
    let other = RemoteDir::new();
    let r = stranger.run(&["copy", &url, &other.url(), "hosts/web1"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("does not trust"), "{}", r.stderr);
    assert!(!other.path().join("hosts").exists());
}

#[test]
fn keys_bad_key_input_exits_2_and_list_shows_the_trusted() {
    let w = World::new();
    let list = w.host.run(&["--json", "key", "list"]).ok().json();
    let own = std::fs::read_to_string(w.deployer.state().join("signing.key.pub")).unwrap();
    assert_eq!(
        list["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["key"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec![own.trim()]
    );
    for (args, needle) in [
        (
            vec!["key", "trust", "ed25519:zz"],
            "not a sysgen public key",
        ),
        (vec!["key", "trust", "/nonexistent.pub"], "cannot read"),
        (vec!["key", "generate"], "cannot create the key file"),
    ] {
        let r = w.deployer.run(&args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
    let g1 = build(&w.deployer, "c1.json", files(2, None, ""));
    let r = w
        .deployer
        .run(&["push", &g1, &w.url(), "--key", "/nonexistent"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("/nonexistent"), "{}", r.stderr);
    // A host without a key of its own is told how to make one.
    let g = build(&w.host, "c.json", files(2, None, ""));
    let r = w.host.run(&["push", &g, &w.url()]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("sysgen key generate"), "{}", r.stderr);
    assert!(!w.remote.path().exists(), "nothing was pushed");
}

#[test]
fn two_pushes_racing_on_one_ref_never_both_win_silently() {
    let w = World::new();
    let url = w.url();
    let g1 = build(&w.deployer, "c1.json", files(20, None, ""));
    let g2 = build(&w.deployer, "c2.json", files(20, Some(7), ""));
    // Both closures are there first, so the two pushes meet at the ref.
    w.deployer.run(&["push", &g1, &url]).ok();
    w.deployer.run(&["push", &g2, &url]).ok();
    for round in 0..5 {
        let before: Value = std::fs::read(w.remote.path().join("hosts/web1"))
            .ok()
            .map_or(json!({"seq": 0}), |b| serde_json::from_slice(&b).unwrap());
        let spawn = |g: &str| {
            w.deployer
                .cmd(&["--json", "push", g, &url, "--ref", "hosts/web1"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(&g1), spawn(&g2));
        let runs = [a, b].map(|c| sysgen_tests::Run::from(c.wait_with_output().unwrap()));
        let won: Vec<&sysgen_tests::Run> = runs.iter().filter(|r| r.code == Some(0)).collect();
        for r in runs.iter().filter(|r| r.code != Some(0)) {
            assert_eq!(r.code, Some(1), "round {round}: {}", r.stderr);
            assert!(
                r.stderr.contains("another push won")
                    || r.stderr.contains("another push holds the lock"),
                "round {round}: {}",
                r.stderr
            );
        }
        assert!(!won.is_empty(), "round {round}: neither push won");
        // Every win is one version more; the ref names the last winner's.
        let after: Value =
            serde_json::from_slice(&std::fs::read(w.remote.path().join("hosts/web1")).unwrap())
                .unwrap();
        assert_eq!(
            after["seq"].as_u64().unwrap(),
            before["seq"].as_u64().unwrap() + won.len() as u64,
            "round {round}"
        );
        let seqs: BTreeSet<u64> = won
            .iter()
            .map(|r| r.json()["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs.len(),
            won.len(),
            "round {round}: two pushes got one version"
        );
        assert!(
            w.remote
                .keys_under("hosts")
                .iter()
                .all(|k| k == "hosts/web1")
        );
    }
}

#[test]
fn push_and_pull_say_what_moved_in_whole_lines() {
    let w = World::new();
    let g1 = build(&w.deployer, "c1.json", files(10, None, ""));
    // The same push as JSON to one remote and for people to another.
    let other = RemoteDir::new();
    let j = w
        .deployer
        .run(&["--json", "push", &g1, &other.url(), "--ref", "hosts/web1"])
        .ok()
        .json();
    let bytes = j["moved"]["bytes"].as_u64().unwrap();
    let human = w
        .deployer
        .run(&["push", &g1, &w.url(), "--ref", "hosts/web1"])
        .ok();
    let public = std::fs::read_to_string(w.deployer.state().join("signing.key.pub")).unwrap();
    let kib = |b: u64| sysgen_tests::remote::human(b);
    assert_eq!(
        human.stdout,
        format!(
            "pushed generation {short} to {url}: 10 objects sent ({size}), 0 already there, 4 nodes, 1 manifest\n\
             hosts/web1 -> {short} (version 1, signed by {key})\n",
            short = &g1[..12],
            url = w.url(),
            size = kib(bytes),
            key = public.trim()
        )
    );
    let pulled = w.host.run(&["pull", &w.url(), "hosts/web1"]).ok();
    assert_eq!(
        pulled.stdout,
        format!(
            "pulled hosts/web1 (version 1) from {url}: generation {short}: 10 objects sent ({size}), 0 already there, 4 nodes, 1 manifest\n\
             switch to it with: sysgen switch {short}\n",
            short = &g1[..12],
            url = w.url(),
            size = kib(bytes),
        )
    );
}
