//! What pull refuses (unsigned, forged, untrusted, replayed, renamed refs:
//! exit 2, nothing changed) and secrets on a remote (encrypted to one
//! host's ssh key: never in clear there, readable by that host only).

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs;

use serde_json::{Value, json};
use sysgen_tests::remote::{RemoteDir, build, host_key, keygen, moved, trust};
use sysgen_tests::{TestEnv, any_file_contains, s, stored_frame};

fn motd(text: &str) -> Value {
    json!({ "files": { "/etc/motd": { "content": text } } })
}

/// What a refused pull must leave as it was: the root, and the host's
/// generations and store.
fn host_state(host: &TestEnv) -> String {
    let list = host.run(&["--json", "list"]).ok().stdout;
    format!(
        "{}\n{list}\n{}",
        host.tree(),
        sysgen_tests::dump_tree(
            &host.state().join("store"),
            &[host.state().join("store/tmp")]
        )
    )
}

#[track_caller]
fn refused(host: &TestEnv, url: &str, r#ref: &str, needle: &str) {
    let before = host_state(host);
    let r = host.run(&["pull", url, r#ref, "--switch"]);
    assert_eq!(r.code, Some(2), "pull {ref} should be refused:\n{}", r.stderr, ref = r#ref);
    assert!(
        r.stderr.contains(needle),
        "expected {needle:?} in:\n{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(r#ref),
        "the error names the ref:\n{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert_eq!(host_state(host), before, "a refused pull changed the host");
}

#[test]
fn unsigned_forged_untrusted_renamed_and_replayed_refs_are_refused() {
    let deployer = TestEnv::new();
    let host = TestEnv::new();
    let remote = RemoteDir::new();
    let url = remote.url();
    trust(&host, &keygen(&deployer));
    let g1 = build(&deployer, "c1.json", motd("one\n"));
    let g2 = build(&deployer, "c2.json", motd("two\n"));
    deployer
        .run(&["push", &g1, &url, "--ref", "hosts/web1"])
        .ok();
    let v1 = fs::read(remote.path().join("hosts/web1")).unwrap();
    deployer
        .run(&["push", &g2, &url, "--ref", "hosts/web1"])
        .ok();
    let v2 = fs::read(remote.path().join("hosts/web1")).unwrap();
    let doc2: Value = serde_json::from_slice(&v2).unwrap();

    // Unsigned: the same document without its signature.
    fs::write(
        remote.path().join("hosts/unsigned"),
        serde_json::to_vec(
            &json!({"name": "hosts/unsigned", "seq": 1, "time": 0, "generation": g2}),
        )
        .unwrap(),
    )
    .unwrap();
    refused(&host, &url, "hosts/unsigned", "unsigned");

    // Forged: pointed at another generation, the signature kept.
    let mut forged = doc2.clone();
    forged["generation"] = json!(g1);
    fs::write(
        remote.path().join("hosts/web1"),
        serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    refused(&host, &url, "hosts/web1", "bad signature");

    // Renamed: a genuine ref copied under another name.
    fs::write(remote.path().join("hosts/web2"), &v2).unwrap();
    refused(&host, &url, "hosts/web2", "another name");

    // Untrusted: signed by a key this host never trusted.
    let other = TestEnv::new();
    keygen(&other);
    let g3 = build(&other, "c3.json", motd("three\n"));
    other.run(&["push", &g3, &url, "--ref", "hosts/other"]).ok();
    refused(&host, &url, "hosts/other", "does not trust");

    // Replayed: the host accepts version 2, then the remote serves version 1.
    fs::write(remote.path().join("hosts/web1"), &v2).unwrap();
    let ok = host
        .run(&["--json", "pull", &url, "hosts/web1", "--switch"])
        .ok();
    assert_eq!(ok.json()["seq"], 2);
    assert_eq!(fs::read_to_string(host.at("/etc/motd")).unwrap(), "two\n");
    fs::write(remote.path().join("hosts/web1"), &v1).unwrap();
    refused(&host, &url, "hosts/web1", "replayed");
    // The same version again is fine (a pull agent's every run).
    fs::write(remote.path().join("hosts/web1"), &v2).unwrap();
    host.run(&["pull", &url, "hosts/web1"]).ok();
}

const SECRET: &str = "tok-Remote-9fQ2xLp7Vb3Kz8Wd\n";

#[test]
fn a_secret_is_never_in_clear_on_the_remote_and_only_its_host_decrypts_it() {
    let test = "a_secret_is_never_in_clear_on_the_remote_and_only_its_host_decrypts_it";
    let deployer = TestEnv::new();
    let host = TestEnv::new();
    let intruder = TestEnv::new();
    let remote = RemoteDir::new();
    let url = remote.url();
    let keys = tempfile::tempdir().unwrap();
    let Some((host_priv, host_pub)) = host_key(keys.path(), "host", test) else {
        return;
    };
    let Some((other_priv, _)) = host_key(keys.path(), "other", test) else {
        return;
    };
    let public = keygen(&deployer);
    trust(&host, &public);
    trust(&intruder, &public);
    deployer.write_cfg("token", SECRET);
    let cfg = json!({ "files": {
        "/etc/app/token": { "source": "token", "secret": true },
        "/etc/motd": { "content": "hello\n" }
    }});
    let g = build(&deployer, "c.json", cfg);

    // Without a recipient, push refuses before writing anything.
    let r = deployer.run(&["push", &g, &url, "--ref", "hosts/web1"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("--recipient"), "{}", r.stderr);
    assert!(remote.keys_under("hosts").is_empty());

    let p = deployer
        .run(&[
            "--json",
            "push",
            &g,
            &url,
            "--ref",
            "hosts/web1",
            "--recipient",
            s(&host_pub),
        ])
        .ok();
    assert_eq!(p.json()["moved"]["secrets"], 1, "{}", p.stdout);
    // Nowhere in the remote: not the text, not without its newline, not
    // its zstd frame.
    for needle in [
        SECRET.as_bytes().to_vec(),
        SECRET.trim_end().as_bytes().to_vec(),
        stored_frame(SECRET.as_bytes()),
    ] {
        assert!(
            !any_file_contains(&remote.path(), &needle),
            "the secret is in clear on the remote"
        );
    }
    assert!(!p.stdout.contains(SECRET.trim_end()));

    // Another host's key cannot decrypt it: a clear refusal, nothing changed.
    let before = host_state(&intruder);
    let bad = intruder.run(&[
        "pull",
        &url,
        "hosts/web1",
        "--switch",
        "--identity",
        s(&other_priv),
    ]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("another host's ssh key"),
        "{}",
        bad.stderr
    );
    assert!(!bad.stderr.contains("panicked"), "{}", bad.stderr);
    assert_eq!(host_state(&intruder), before);
    // Nor a host with no key at all.
    let none = intruder.run(&["pull", &url, "hosts/web1"]);
    assert_eq!(none.code, Some(2), "{}", none.stderr);
    assert!(none.stderr.contains("--identity"), "{}", none.stderr);

    // Its host can, and only there is it in clear.
    let ok = host
        .run(&[
            "--json",
            "pull",
            &url,
            "hosts/web1",
            "--switch",
            "--identity",
            s(&host_priv),
        ])
        .ok();
    assert_eq!(moved(&ok).0, 2);
    assert_eq!(
        fs::read_to_string(host.at("/etc/app/token")).unwrap(),
        SECRET
    );
    deployer.run(&["switch", &g]).ok();
    assert_eq!(host.tree(), deployer.tree());

    // The root's own host key is the default identity.
    let third = TestEnv::new();
    trust(&third, &public);
    fs::create_dir_all(third.at("/etc/ssh")).unwrap();
    fs::copy(&host_priv, third.at("/etc/ssh/ssh_host_ed25519_key")).unwrap();
    third.run(&["pull", &url, "hosts/web1", "--switch"]).ok();
    assert_eq!(
        fs::read_to_string(third.at("/etc/app/token")).unwrap(),
        SECRET
    );
}

#[test]
fn a_damaged_object_on_the_remote_is_refused_on_arrival_naming_it() {
    let deployer = TestEnv::new();
    let host = TestEnv::new();
    let remote = RemoteDir::new();
    let url = remote.url();
    trust(&host, &keygen(&deployer));
    let g = build(&deployer, "c.json", motd("a file the remote will damage\n"));
    deployer
        .run(&["push", &g, &url, "--ref", "hosts/web1"])
        .ok();
    let key = sysgen_tests::remote::object_key(b"a file the remote will damage\n");
    let path = remote.path().join(&key);
    // Another valid zstd frame, of other bytes: only the hash tells.
    fs::write(&path, stored_frame(b"something else\n")).unwrap();
    let before = host_state(&host);
    let r = host.run(&["pull", &url, "hosts/web1", "--switch"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains(&key), "names the key: {}", r.stderr);
    assert!(r.stderr.contains("does not match its hash"), "{}", r.stderr);
    assert_eq!(host_state(&host), before, "nothing of it was kept");
}
