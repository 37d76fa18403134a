//! Verified downloads (`files.<path>.url` with `sha256` or `blake3`,
//! issue #13), from a real HTTP server the test runs on loopback: fetched
//! once into the store, a mismatch named with both hashes, a server that
//! dies halfway, HTTP errors, rollback and rebuild with the server gone,
//! and the proxy taken from the environment.
//!
//! The server (`sysgen_tests::http`) is plain `std::net`, so that a test
//! can make it misbehave (announce more bytes than it sends, then hang
//! up), and rustls for HTTPS with a CA the test makes. It listens on
//! 127.0.0.1 only and stops by itself.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::net::TcpListener;
use std::path::PathBuf;

use serde_json::json;
use sha2::Digest;
use sysgen_tests::http::{Route, Server, TestPki};
use sysgen_tests::{Run, TestEnv, cannot_run, file_line, s, store_holds, tree_with};

/// 3 MiB that do not compress away: a large file, streamed.
fn big_body() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..3 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn sha256(b: &[u8]) -> String {
    hex_of(&sha2::Sha256::digest(b))
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn blake3_hex(b: &[u8]) -> String {
    blake3::hash(b).to_hex().to_string()
}

/// Runs sysgen with no proxy from the test's own environment, or with
/// `http_proxy` set to `proxy`.
fn run(env: &TestEnv, args: &[&str], proxy: Option<&str>) -> Run {
    run_with(env.cmd(args), proxy)
}

fn run_with(mut c: std::process::Command, proxy: Option<&str>) -> Run {
    for v in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        c.env_remove(v);
    }
    if let Some(p) = proxy {
        c.env("http_proxy", p);
    }
    Run::from(c.output().unwrap())
}

fn download_cfg(env: &TestEnv, name: &str, files: serde_json::Value) -> PathBuf {
    env.config(
        name,
        json!({"files": files, "symlinks": {"/etc/marker": name}}),
    )
}

/// The store's `tmp/` holds nothing: no partial download was left.
#[track_caller]
fn tmp_is_empty(env: &TestEnv) {
    let tmp = env.state().join("store/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "{} holds {left:?}", tmp.display());
}

#[track_caller]
fn generations(env: &TestEnv) -> usize {
    let l = run(env, &["--json", "list"], None).json();
    l["generations"].as_array().unwrap().len()
}

#[test]
fn a_download_is_checked_stored_and_fetched_only_once() {
    let server = Server::start();
    let big = big_body();
    let small = b"#!/bin/sh\necho hello\n".to_vec();
    server.route("/tool.bin", Route::Full(big.clone()));
    server.route("/hello.sh", Route::Full(small.clone()));
    let env = TestEnv::new();
    let base = env.tree();
    let c = download_cfg(
        &env,
        "c.json",
        json!({
            "/opt/tool.bin": {"url": server.url("/tool.bin"), "sha256": sha256(&big), "mode": "0755"},
            "/opt/hello.sh": {"url": server.url("/hello.sh"), "blake3": blake3_hex(&small).to_uppercase()},
        }),
    );
    run(&env, &["switch", s(&c)], None).ok();
    let tree = env.tree();
    let mut expected = tree_with(
        &base,
        &[
            "/opt dir 0755 0:0",
            &file_line("/opt/hello.sh", 0o644, "0:0", &small),
            &file_line("/opt/tool.bin", 0o755, "0:0", &big),
            "/etc/marker symlink 0:0 -> c.json",
        ],
    );
    // The state directory's parents appear with the first switch.
    for d in ["/var dir 0755 0:0", "/var/lib dir 0755 0:0"] {
        expected = tree_with(&expected, &[d]);
    }
    assert_eq!(tree, expected);
    assert_eq!(server.hits(), 2, "one request per file");
    assert!(store_holds(&env.state().join("store"), &big, false));

    // Built again, and after an unrelated change: no request at all.
    run(&env, &["build", s(&c)], None).ok();
    let c2 = download_cfg(
        &env,
        "c2.json",
        json!({
            "/opt/tool.bin": {"url": server.url("/tool.bin"), "sha256": sha256(&big), "mode": "0755"},
            "/opt/hello.sh": {"url": server.url("/hello.sh"), "blake3": blake3_hex(&small)},
        }),
    );
    run(&env, &["switch", s(&c2)], None).ok();
    assert_eq!(server.hits(), 2, "never downloaded again while stored");
    tmp_is_empty(&env);

    // A secret download goes to the secret area, readable by root only.
    server.route("/key", Route::Full(b"private key\n".to_vec()));
    let c3 = download_cfg(
        &env,
        "c3.json",
        json!({"/etc/key": {"url": server.url("/key"), "sha256": sha256(b"private key\n"), "secret": true}}),
    );
    run(&env, &["switch", s(&c3)], None).ok();
    let store = env.state().join("store");
    assert!(store_holds(&store, b"private key\n", true));
    assert!(!store_holds(&store, b"private key\n", false));
    let md = std::fs::metadata(env.at("/etc/key")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::mode(&md) & 0o7777, 0o600);
}

#[test]
fn a_mismatch_names_both_hashes_and_changes_nothing() {
    let server = Server::start();
    let body = b"the real content\n".to_vec();
    server.route("/f", Route::Full(body.clone()));
    let env = TestEnv::new();
    let first = download_cfg(&env, "first.json", json!({}));
    run(&env, &["switch", s(&first)], None).ok();
    let before = env.tree();
    let wrong = sha256(b"what the admin expected\n");
    let c = download_cfg(
        &env,
        "c.json",
        json!({"/etc/f": {"url": server.url("/f"), "sha256": wrong}}),
    );
    let r = run(&env, &["switch", s(&c)], None).expect(1);
    assert!(
        r.stderr.contains(&format!(
            "sha256 mismatch: the configuration expects {wrong}, the download has {}",
            sha256(&body)
        )) && r.stderr.contains(&server.url("/f"))
            && r.stderr.contains("files./etc/f")
            && r.stderr.contains("nothing was stored"),
        "{}",
        r.stderr
    );
    assert_eq!(env.tree(), before, "the root is unchanged");
    assert_eq!(generations(&env), 1);
    assert!(!store_holds(&env.state().join("store"), &body, false));
    tmp_is_empty(&env);
}

#[test]
fn a_server_that_dies_halfway_changes_nothing() {
    let server = Server::start();
    let body = big_body();
    server.route("/cut", Route::Half(body.clone()));
    let env = TestEnv::new();
    let first = download_cfg(&env, "first.json", json!({}));
    run(&env, &["switch", s(&first)], None).ok();
    let before = env.tree();
    let c = download_cfg(
        &env,
        "c.json",
        json!({"/opt/big": {"url": server.url("/cut"), "sha256": sha256(&body)}}),
    );
    let r = run(&env, &["switch", s(&c)], None).expect(1);
    assert!(
        r.stderr.contains(&server.url("/cut"))
            && r.stderr.contains("the transfer broke off after")
            && r.stderr.contains("nothing was stored"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert_eq!(env.tree(), before);
    assert_eq!(generations(&env), 1);
    assert!(!store_holds(&env.state().join("store"), &body, false));
    tmp_is_empty(&env);
}

#[test]
fn http_errors_and_a_closed_port_change_nothing() {
    let server = Server::start();
    server.route("/gone", Route::Status(410));
    let env = TestEnv::new();
    let first = download_cfg(&env, "first.json", json!({}));
    run(&env, &["switch", s(&first)], None).ok();
    let before = env.tree();
    let digest = sha256(b"x");
    for (url, want) in [
        (server.url("/gone"), "410".to_owned()),
        (server.url("/missing"), "404".to_owned()),
    ] {
        let c = download_cfg(
            &env,
            "c.json",
            json!({"/etc/f": {"url": url, "sha256": digest}}),
        );
        let r = run(&env, &["build", s(&c)], None).expect(1);
        assert!(
            r.stderr.contains(&url) && r.stderr.contains(&want),
            "{want}: {}",
            r.stderr
        );
    }
    // A port nothing listens on: bound, then closed.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{closed}/f");
    let c = download_cfg(
        &env,
        "c.json",
        json!({"/etc/f": {"url": url, "sha256": digest}}),
    );
    let r = run(&env, &["switch", s(&c)], None).expect(1);
    assert!(r.stderr.contains(&url), "{}", r.stderr);
    assert_eq!(env.tree(), before);
    assert_eq!(generations(&env), 1);
    tmp_is_empty(&env);
}

#[test]
fn rollback_and_rebuilds_need_no_network() {
    let server = Server::start();
    let v1 = b"tool version 1\n".to_vec();
    let v2 = big_body();
    server.route("/v1", Route::Full(v1.clone()));
    server.route("/v2", Route::Full(v2.clone()));
    let env = TestEnv::new();
    let c1 = download_cfg(
        &env,
        "c1.json",
        json!({"/opt/tool": {"url": server.url("/v1"), "sha256": sha256(&v1)}}),
    );
    let c2 = download_cfg(
        &env,
        "c2.json",
        json!({"/opt/tool": {"url": server.url("/v2"), "blake3": blake3_hex(&v2)}}),
    );
    run(&env, &["switch", s(&c1)], None).ok();
    let tree1 = env.tree();
    run(&env, &["switch", s(&c2)], None).ok();
    let tree2 = env.tree();
    assert_ne!(tree1, tree2);
    // The server is gone: nothing answers at its address any more.
    drop(server);
    run(&env, &["rollback"], None).ok();
    assert_eq!(env.tree(), tree1, "rollback is offline");
    run(&env, &["switch", s(&c2)], None).ok();
    assert_eq!(
        env.tree(),
        tree2,
        "a rebuild of a stored download is offline"
    );
    run(&env, &["switch", s(&c1)], None).ok();
    assert_eq!(env.tree(), tree1);
}

#[test]
fn a_download_is_kept_while_a_generation_has_it_and_fetched_again_after_gc() {
    let server = Server::start();
    let v1 = b"release 1\n".to_vec();
    server.route("/r", Route::Full(v1.clone()));
    let env = TestEnv::new();
    let c1 = download_cfg(
        &env,
        "c1.json",
        json!({"/opt/r": {"url": server.url("/r"), "sha256": sha256(&v1)}}),
    );
    let c2 = download_cfg(&env, "c2.json", json!({"/opt/r": {"content": "local\n"}}));
    run(&env, &["switch", s(&c1)], None).ok();
    run(&env, &["switch", s(&c2)], None).ok();
    // Generation 1 still has it: gc keeps it, a rebuild does not fetch.
    run(&env, &["gc"], None).ok();
    run(&env, &["build", s(&c1)], None).ok();
    assert_eq!(server.hits(), 1);
    // Once gc deleted every generation that had it, the next build fetches
    // it again (the cache row alone is never trusted).
    run(&env, &["gc", "--keep", "1"], None).ok();
    let store = env.state().join("store");
    assert!(!store_holds(&store, &v1, false), "gc deleted the object");
    run(&env, &["switch", s(&c1)], None).ok();
    assert_eq!(server.hits(), 2);
    assert_eq!(std::fs::read(env.at("/opt/r")).unwrap(), v1);
}

#[test]
fn the_proxy_comes_from_the_environment() {
    // The loopback server plays the proxy: sysgen asks it for a tunnel to
    // a host that does not exist (.invalid never resolves), so the file
    // can only have come through it.
    let proxy = Server::start();
    let body = b"through the proxy\n".to_vec();
    proxy.route("/via-proxy", Route::Full(body.clone()));
    let env = TestEnv::new();
    let url = "http://downloads.invalid/via-proxy";
    let c = download_cfg(
        &env,
        "c.json",
        json!({"/etc/f": {"url": url, "sha256": sha256(&body)}}),
    );
    run(
        &env,
        &["switch", s(&c)],
        Some(&format!("http://{}", proxy.addr)),
    )
    .ok();
    assert_eq!(std::fs::read(env.at("/etc/f")).unwrap(), body);
    let seen = proxy.requests();
    assert_eq!(
        seen,
        vec![
            "CONNECT downloads.invalid:80 HTTP/1.1".to_owned(),
            "GET /via-proxy HTTP/1.1".to_owned()
        ]
    );
}

/// A switch to a generation with a download and a template that reads a
/// secret, crashed after every step: `recover` lands exactly on it, and
/// `recover --rollback` exactly on the generation before, while the server
/// answers nothing but errors (recovery reads the store, never the network).
#[test]
fn a_crash_at_every_step_recovers_both_ways_without_the_network() {
    use std::os::unix::fs::PermissionsExt;

    let server = Server::start();
    let tool = big_body();
    server.route("/tool", Route::Full(tool.clone()));
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("token");
    std::fs::write(&secret, "tok-Crash-Test-4411\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let world = |env: &TestEnv| -> (PathBuf, PathBuf) {
        std::fs::create_dir_all(env.at("/var/lib")).unwrap();
        let c1 = env.config(
            "c1.json",
            json!({"files": {"/etc/motd": {"content": "one\n"}, "/etc/app/app.conf": {"content": "v1\n"}}}),
        );
        let c2 = env.config(
            "c2.json",
            json!({"vars": {"port": 8080},
                   "secrets": {"token": {"file": s(&secret)}},
                   "files": {
                       "/etc/motd": {"content": "two\n"},
                       "/etc/app/app.conf": {"content": "port={{ port }}\ntoken={{ secrets.token }}\n", "template": true},
                       "/opt/tool": {"url": server.url("/tool"), "sha256": sha256(&tool), "mode": "0755"}}}),
        );
        (c1, c2)
    };
    // Reference trees, from a root that never crashed.
    let reference = TestEnv::new();
    let (c1, c2) = world(&reference);
    run(&reference, &["switch", s(&c1)], None).ok();
    let from_tree = reference.tree();
    let n = run(&reference, &["--json", "switch", "--dry-run", s(&c2)], None)
        .ok()
        .steps()
        .len() as u64;
    run(&reference, &["switch", s(&c2)], None).ok();
    let to_tree = reference.tree();
    assert!(n >= 4, "{n} steps");

    for k in 1..=n {
        for back in [false, true] {
            server.route("/tool", Route::Full(tool.clone()));
            let env = TestEnv::new();
            let (c1, c2) = world(&env);
            run(&env, &["switch", s(&c1)], None).ok();
            let r = Run::from(
                env.cmd(&["switch", s(&c2)])
                    .env("SYSGEN_FAULT_AFTER_STEPS", k.to_string())
                    .output()
                    .unwrap(),
            );
            assert!(
                r.killed,
                "step {k}: the fault point did not abort:\n{}",
                r.stderr
            );
            server.route("/tool", Route::Status(503));
            let how: &[&str] = if back {
                &["recover", "--rollback"]
            } else {
                &["recover"]
            };
            run(&env, how, None).ok();
            let (want, number) = if back { (&from_tree, 1) } else { (&to_tree, 2) };
            assert_eq!(&env.tree(), want, "step {k}, {how:?}");
            let st = run(&env, &["--json", "status"], None).ok().json();
            assert_eq!(st["active"]["number"], number, "step {k}, {how:?}: {st}");
        }
    }
}

/// HTTPS with the host's trust store: a server whose certificate a test
/// CA signed is trusted once that CA is (here through `SSL_CERT_FILE`,
/// which the trust store honours as OpenSSL does), and refused, with
/// nothing stored, when it is not.
#[test]
fn https_checks_the_server_against_the_hosts_trust_store() {
    let Some(pki) = TestPki::make() else {
        cannot_run(
            "https_checks_the_server_against_the_hosts_trust_store",
            "the openssl command is missing (apt-get install openssl)",
        );
        return;
    };
    let server = Server::start_tls(&pki);
    let body = b"over tls\n".to_vec();
    server.route("/t", Route::Full(body.clone()));
    let env = TestEnv::new();
    let url = server.url("/t").replace("127.0.0.1", "localhost");
    let c = download_cfg(
        &env,
        "c.json",
        json!({"/etc/t": {"url": url, "sha256": sha256(&body)}}),
    );
    // An empty trust store: the server is a stranger.
    let empty = pki.dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let mut cmd = env.cmd(&["switch", s(&c)]);
    cmd.env("SSL_CERT_FILE", &empty).env_remove("SSL_CERT_DIR");
    let r = run_with(cmd, None).expect(1);
    assert!(
        r.stderr.contains(&url) && r.stderr.contains("nothing was stored"),
        "{}",
        r.stderr
    );
    assert!(!env.at("/etc/t").exists());
    // The test CA trusted: the download goes through.
    let mut cmd = env.cmd(&["switch", s(&c)]);
    cmd.env("SSL_CERT_FILE", pki.ca())
        .env_remove("SSL_CERT_DIR");
    run_with(cmd, None).ok();
    assert_eq!(std::fs::read(env.at("/etc/t")).unwrap(), body);
}
