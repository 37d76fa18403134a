//! A crash after every step of one switch that involves every kind of
//! issue #13 at once, then `recover` and `recover --rollback`, each landing
//! exactly on one generation.
//!
//! The root is the cached Debian root with sudo (`sysgen_tests::sudo`), so
//! the shadow tools and `visudo` are the root's own. Generation 1 → 2
//! changes something of every kind:
//!
//! - groups: `legacy` leaves, `ops` arrives, `dev` stays with new members;
//! - users: `alice` leaves (her home kept), `bob` arrives; a file owned by
//!   each (alice's in her home, bob's in /srv/ops);
//! - a template with a variable and a secret: the variable changes;
//! - verified downloads from a loopback server: one changes, one leaves,
//!   one arrives; while recovering the server answers only errors;
//! - blocks in /etc/hosts, between the admin's own lines: one changes, one
//!   leaves, one arrives;
//! - a sudoers file validated with `visudo -cf %s` arrives;
//! - the generation's `checks` change (all pass).
//!
//! One root is prepared at generation 1 and copied for each of the two
//! crashes at every step (`cp -a`, `/usr` hard-linked). The account files
//! are compared line by line, sorted (the shadow tools append a user made
//! again at the end); the rest of the root as a whole tree, less sysgen's
//! state, `/dev` and the shadow tools' backups. Generation 2's tree comes
//! from a switch that never crashed; generation 1's is the prepared root's,
//! with what `docs/users.md` and `docs/blocks.md` say a way back changes
//! (a removed user's home is kept; a block added back goes at the end of
//! its file).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sysgen_tests::accounts::{
    ACCOUNT_FILES, account_lines, moved, same_tree_after, sorted, without_backups,
};
use sysgen_tests::http::{Route, Server};
use sysgen_tests::sudo::{copy_of, sudo_env};
use sysgen_tests::{TestEnv, dump_tree, file_line, s};

const NAME: &str = "a_crash_after_every_step_of_a_switch_with_every_kind_recovers_both_ways";

/// The admin's own lines of /etc/hosts, before and after sysgen's blocks.
const HOSTS_BEFORE: &str = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n";
const HOSTS_AFTER: &str = "192.168.1.10 printer # the admin's\n";

const SUDOERS: &str = "%ops ALL=(ALL) NOPASSWD: /usr/bin/true\n";

/// The bodies the server has, by path.
fn bodies() -> [(&'static str, Vec<u8>); 4] {
    [
        ("/tool-v1", b"tool, release 1\n".to_vec()),
        ("/tool-v2", b"tool, release 2\n".to_vec()),
        ("/old.dat", b"data that goes away\n".to_vec()),
        ("/new.dat", b"data that arrives\n".to_vec()),
    ]
}

fn serve_all(server: &Server) {
    for (path, body) in bodies() {
        server.route(path, Route::Full(body));
    }
}

/// Recovery reads the store, never the network: every path errs.
fn serve_errors(server: &Server) {
    for (path, _) in bodies() {
        server.route(path, Route::Status(503));
    }
}

/// A download entry for `path` on the server, verified with blake3.
fn download(server: &Server, path: &str) -> serde_json::Value {
    let (_, body) = bodies().into_iter().find(|(p, _)| *p == path).unwrap();
    json!({ "url": server.url(path), "blake3": blake3::hash(&body).to_hex().to_string() })
}

const TEMPLATE: &str = "port={{ port }}\ntoken={{ secrets.token }}\n";

/// Generations 1 and 2, written to `env`'s `cfg/`.
fn configs(env: &TestEnv, server: &Server, secret: &Path) -> (PathBuf, PathBuf) {
    let c1 = env.config(
        "c1.json",
        json!({
            "groups": { "dev": {}, "legacy": {} },
            "users": { "alice": { "groups": ["dev", "legacy"], "shell": "/bin/bash" } },
            "vars": { "port": 8080 },
            "secrets": { "token": { "file": s(secret) } },
            "files": {
                "/home/alice/.plan": { "content": "plans\n", "mode": "0600",
                                       "owner": "alice", "group": "dev" },
                "/etc/app/app.conf": { "content": TEMPLATE, "template": true },
                "/opt/tool": download(server, "/tool-v1"),
                "/opt/old.dat": download(server, "/old.dat")
            },
            "blocks": { "/etc/hosts": { "db": "10.0.0.5 db\n", "old": "10.0.0.8 old\n" } },
            "checks": ["grep -q port=8080 /etc/app/app.conf"]
        }),
    );
    let c2 = env.config(
        "c2.json",
        json!({
            "groups": { "dev": {}, "ops": {} },
            "users": { "bob": { "groups": ["dev", "ops"], "comment": "Bob" } },
            "vars": { "port": 9090 },
            "secrets": { "token": { "file": s(secret) } },
            "files": {
                "/srv/ops/notes": { "content": "bob's notes\n", "mode": "0640",
                                    "owner": "bob", "group": "ops" },
                "/etc/app/app.conf": { "content": TEMPLATE, "template": true },
                "/opt/tool": download(server, "/tool-v2"),
                "/opt/new.dat": download(server, "/new.dat"),
                "/etc/sudoers.d/ops": { "content": SUDOERS, "mode": "0440",
                                        "validate": "visudo -cf %s" }
            },
            "blocks": { "/etc/hosts": { "db": "10.0.0.6 db\n", "web": "10.0.0.7 web\n" } },
            "checks": ["grep -q port=9090 /etc/app/app.conf", "visudo -c", "id bob"]
        }),
    );
    (c1, c2)
}

/// A fresh world whose root is a copy of the prepared one: `/usr` as hard
/// links (the switch and the root's tools never write there, and the test
/// checks at its end that the prepared root did not change through them),
/// everything else copied (`cp -a`). Copying all of `/usr` for each of the
/// many crashes took most of the test's time.
fn copy_of_prepared(prepared: &TestEnv) -> TestEnv {
    let env = TestEnv {
        dir: tempfile::tempdir().unwrap(),
    };
    fs::create_dir(env.root()).unwrap();
    fs::create_dir(env.cfg()).unwrap();
    let src = prepared.root();
    let rest: Vec<PathBuf> = fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name() != Some("usr".as_ref()))
        .collect();
    let cp = |args: &[&str], from: &[PathBuf], to: &Path| {
        let st = Command::new("cp")
            .args(args)
            .args(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(st.success(), "cp {args:?} {from:?} {}", to.display());
    };
    cp(&["-a"], &rest, &env.root());
    cp(&["-al"], &[src.join("usr")], &env.at("/usr"));
    let meta = fs::metadata(&src).unwrap();
    fs::set_permissions(env.root(), meta.permissions()).unwrap();
    env
}

/// The root as the crash test compares it: the account files' lines,
/// sorted, and the rest of the root as a whole tree, less sysgen's state,
/// `/dev` (reading /dev/zero never ends) and the shadow tools' backups
/// (`/etc/passwd-` …, rewritten by every tool). `/tmp` is in it: no staged
/// copy of a validated file stays.
fn state_of(env: &TestEnv) -> (String, String) {
    let tree = without_backups(&dump_tree(&env.root(), &[env.state(), env.at("/dev")]));
    let rest = tree
        .lines()
        .filter(|l| !ACCOUNT_FILES.contains(&l.split(' ').next().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n");
    (account_lines(env), rest)
}

#[test]
fn a_crash_after_every_step_of_a_switch_with_every_kind_recovers_both_ways() {
    // The test runs longer than a server's default two minutes.
    let server = Server::start_lasting(std::time::Duration::from_secs(600));
    serve_all(&server);
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("token");
    fs::write(&secret, "tok-All-Kinds-7310\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();

    // The prepared root: the admin's /etc/hosts, generation 1, then the
    // admin's own line after sysgen's blocks.
    let Some(prepared) = sudo_env(NAME) else {
        return;
    };
    prepared.write_root("/etc/hosts", HOSTS_BEFORE);
    let (c1, c2) = configs(&prepared, &server, &secret);
    prepared.switch(&c1);
    let hosts = fs::read_to_string(prepared.at("/etc/hosts")).unwrap();
    fs::write(prepared.at("/etc/hosts"), format!("{hosts}{HOSTS_AFTER}")).unwrap();
    let at_first = state_of(&prepared);

    // The reference: generation 2 reached by a switch that never crashed.
    let reference = copy_of(&prepared.root());
    let steps = reference
        .run(&["--json", "switch", "--dry-run", s(&c2)])
        .ok()
        .steps();
    reference.switch(&c2);
    reference.run(&["verify"]).ok();
    let at_second = state_of(&reference);
    // Every kind moves in this switch.
    for step in [
        "validate /etc/sudoers.d/ops with `visudo -cf %s`",
        "create group ops",
        "create user bob",
        "remove user alice",
        "remove group legacy",
        "replace file /etc/app/app.conf (secret",
        "create file /opt/new.dat",
        "replace file /opt/tool",
        "remove file /opt/old.dat",
        "create file /srv/ops/notes",
        "edit blocks of /etc/hosts: write db, web; remove old",
        "check `id bob`",
        "activate generation 2",
    ] {
        assert!(
            steps.iter().any(|l| l.starts_with(step)),
            "{step}: {steps:#?}"
        );
    }
    // The ends are what the configurations say.
    assert_eq!(
        fs::read_to_string(prepared.at("/etc/hosts")).unwrap(),
        format!(
            "{HOSTS_BEFORE}# BEGIN sysgen db\n10.0.0.5 db\n# END sysgen db\n\
             # BEGIN sysgen old\n10.0.0.8 old\n# END sysgen old\n{HOSTS_AFTER}"
        )
    );
    assert_eq!(
        fs::read_to_string(reference.at("/etc/hosts")).unwrap(),
        format!(
            "{HOSTS_BEFORE}# BEGIN sysgen db\n10.0.0.6 db\n# END sysgen db\n\
             {HOSTS_AFTER}# BEGIN sysgen web\n10.0.0.7 web\n# END sysgen web\n"
        )
    );
    for (env, port) in [(&prepared, 8080), (&reference, 9090)] {
        assert_eq!(
            fs::read_to_string(env.at("/etc/app/app.conf")).unwrap(),
            format!("port={port}\ntoken=tok-All-Kinds-7310\n")
        );
    }
    for (path, content, mode, owner) in [
        (
            "/home/alice/.plan",
            b"plans\n".as_slice(),
            0o600,
            "1000:1001",
        ),
        ("/opt/tool", b"tool, release 1\n", 0o644, "0:0"),
        ("/opt/old.dat", b"data that goes away\n", 0o644, "0:0"),
    ] {
        let line = file_line(path, mode, owner, content);
        assert!(at_first.1.lines().any(|l| l == line), "{line}");
    }
    for (path, content, mode, owner) in [
        (
            "/srv/ops/notes",
            b"bob's notes\n".as_slice(),
            0o640,
            "1001:1004",
        ),
        ("/etc/sudoers.d/ops", SUDOERS.as_bytes(), 0o440, "0:0"),
        ("/opt/tool", b"tool, release 2\n", 0o644, "0:0"),
        ("/opt/new.dat", b"data that arrives\n", 0o644, "0:0"),
    ] {
        let line = file_line(path, mode, owner, content);
        assert!(at_second.1.lines().any(|l| l == line), "{line}");
    }
    assert!(
        at_first
            .0
            .contains("\nalice:x:1000:1000::/home/alice:/bin/bash\n"),
        "{}",
        at_first.0
    );
    assert!(
        at_second
            .0
            .contains("\nbob:x:1001:1003:Bob:/home/bob:/bin/sh\n"),
        "{}",
        at_second.0
    );
    assert!(
        at_second.0.contains("\ndev:x:1001:bob\n"),
        "{}",
        at_second.0
    );

    let blocks_at = 1 + steps
        .iter()
        .position(|l| l.starts_with("edit blocks of /etc/hosts"))
        .unwrap() as u64;
    for k in 1..=steps.len() as u64 {
        let step = &steps[k as usize - 1];
        for back in [false, true] {
            let env = copy_of_prepared(&prepared);
            serve_all(&server);
            let crashed = env.run_with_fault(k, &["switch", s(&c2)]);
            assert!(crashed.killed, "after step {k} ({step}): {crashed:?}");
            serve_errors(&server);
            let hits = server.hits();
            let how: &[&str] = if back {
                &["recover", "--rollback"]
            } else {
                &["recover"]
            };
            env.run(how).ok();
            let what = format!("{how:?} after step {k} ({step})");
            let got = state_of(&env);
            let want = if back {
                let hosts_edited = k >= blocks_at;
                let tree = rolled_back(&at_first.1, &at_second.1, &got.1, hosts_edited);
                (at_first.0.clone(), tree)
            } else {
                at_second.clone()
            };
            assert_eq!(got.0, want.0, "{what}: the account files");
            same_tree_after(&got.1, &want.1, &format!(" {what}"));
            let st = env.run(&["--json", "status"]).ok().json();
            assert_eq!(
                st["active"]["number"],
                if back { 1 } else { 2 },
                "{what}: {st}"
            );
            assert!(!env.state().join("journal.json").exists(), "{what}");
            env.run(&["verify"]).ok();
            assert_eq!(server.hits(), hits, "{what}: the network was asked");
        }
    }
    // Nothing wrote through the hard links of `/usr` the copies share.
    assert_eq!(state_of(&prepared), at_first, "the prepared root changed");
}

/// Generation 1's tree, as `recover --rollback` leaves it (`got` is what
/// it left): bob, if the crashed switch had made him, was removed as any
/// user is, his home kept until gc (`docs/users.md`); once the switch had
/// edited /etc/hosts (`hosts_edited`), the block `old` it removed is added
/// back at the end of the file, after the admin's line that followed it
/// (`docs/blocks.md`, "Rollback and recover": blocks hold no position);
/// everything else exactly as before.
fn rolled_back(first: &str, second: &str, got: &str, hosts_edited: bool) -> String {
    let mut lines: Vec<String> = first.lines().map(str::to_owned).collect();
    if hosts_edited {
        let hosts = format!(
            "{HOSTS_BEFORE}# BEGIN sysgen db\n10.0.0.5 db\n# END sysgen db\n\
             {HOSTS_AFTER}# BEGIN sysgen old\n10.0.0.8 old\n# END sysgen old\n"
        );
        let at = lines
            .iter()
            .position(|l| l.starts_with("/etc/hosts "))
            .unwrap();
        lines[at] = file_line("/etc/hosts", 0o644, "0:0", hosts.as_bytes());
    }
    if got.contains("/home/.sysgen-homes/bob ") {
        lines.extend(moved(second, "/home/bob", "/home/.sysgen-homes/bob"));
        lines.push("/home/.sysgen-homes dir 0755 0:0".to_owned());
    }
    sorted(lines)
}
