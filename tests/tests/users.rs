//! Users and groups (issue #13; `docs/users.md`) with the real shadow tools
//! of a scratch Debian root (`sysgen_tests::packages::debian_root`, copied
//! per test): create, change, remove; a pre-existing user put back exactly;
//! a file owned by a new user; ids given once; rollback; gc of kept homes;
//! a crash after every step, recovered both ways.
//!
//! The account files are compared whole (`/etc/passwd`, `shadow`, `group`,
//! `gshadow`, `subuid`, `subgid`), and the root as a whole tree less the
//! shadow tools' own backups (`/etc/passwd-` …, rewritten by every tool).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use sysgen_tests::accounts::{
    ACCOUNT_FILES, account_lines, accounts, moved, same_tree, sorted, without_backups,
};
use sysgen_tests::packages::DebEnv;
use sysgen_tests::{TestEnv, file_line, s};

/// The lines of `file` naming `name` (its first field).
fn line(env: &TestEnv, file: &str, name: &str) -> String {
    fs::read_to_string(env.at(file))
        .unwrap()
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .map_or_else(String::new, str::to_owned)
}

/// The whole root (as `DebEnv::tree`), less the shadow tools' backups.
fn tree(d: &DebEnv) -> String {
    without_backups(&d.tree())
}

/// A Debian root where the admin made `bob` (uid 1000) before sysgen.
fn with_bob() -> DebEnv {
    let d = DebEnv::new();
    d.chroot(&["useradd", "-m", "-s", "/bin/sh", "-G", "users", "bob"]);
    // Private homes from now on, as many sites set: a file sysgen puts in
    // a new user's home must leave the home's mode as useradd made it.
    let defs = d.env.root().join("etc/login.defs");
    let mut text = fs::read_to_string(&defs).unwrap();
    text.push_str("HOME_MODE\t0700\n");
    fs::write(&defs, text).unwrap();
    d
}

/// alice (new, in dev, owning a file in her home), dev (new), bob
/// (pre-existing: shell, groups and password changed).
fn first(env: &TestEnv) -> std::path::PathBuf {
    let hash = env.write_cfg("bob.hash", "$6$salt$0123456789abcdef\n");
    fs::set_permissions(&hash, fs::Permissions::from_mode(0o600)).unwrap();
    env.config(
        "c1.json",
        json!({
            "groups": { "dev": {} },
            "users": {
                "alice": { "groups": ["dev"], "shell": "/bin/bash", "comment": "Alice" },
                "bob": { "shell": "/bin/bash", "groups": ["dev", "users"],
                         "password": { "hash_file": "bob.hash" } }
            },
            "files": {
                "/home/alice/.plan": { "content": "plans\n", "mode": "0600",
                                       "owner": "alice", "group": "dev" }
            }
        }),
    )
}

#[test]
fn create_change_remove_and_put_back_a_user_that_was_there() {
    let d = with_bob();
    let env = &d.env;
    let before = accounts(env);
    let before_tree = tree(&d);
    assert_eq!(
        line(env, "/etc/passwd", "bob"),
        "bob:x:1000:1000::/home/bob:/bin/sh"
    );

    // Create: ids from the root's range, past bob's; alice's group shares her uid.
    let out = env.switch(&first(env));
    assert!(!out.stdout.contains("0123456789abcdef"), "{}", out.stdout);
    assert_eq!(
        line(env, "/etc/passwd", "alice"),
        "alice:x:1001:1001:Alice:/home/alice:/bin/bash"
    );
    assert_eq!(line(env, "/etc/group", "alice"), "alice:x:1001:");
    assert_eq!(line(env, "/etc/group", "dev"), "dev:x:1002:alice,bob");
    assert_eq!(line(env, "/etc/group", "users"), "users:x:100:bob");
    assert_eq!(
        line(env, "/etc/passwd", "bob"),
        "bob:x:1000:1000::/home/bob:/bin/bash"
    );
    assert!(
        line(env, "/etc/shadow", "bob").starts_with("bob:$6$salt$0123456789abcdef:"),
        "{}",
        line(env, "/etc/shadow", "bob")
    );
    // The file owned by the new user: made in her home, which useradd made.
    let tree1 = tree(&d);
    assert!(
        tree1.contains(&file_line(
            "/home/alice/.plan",
            0o600,
            "1001:1002",
            b"plans\n"
        )),
        "{tree1}"
    );
    assert!(tree1.contains("/home/alice dir 0700 1001:1001"), "{tree1}");
    env.run(&["verify"]).ok();

    // Change.
    let c2 = env.config(
        "c2.json",
        json!({
            "groups": { "dev": {} },
            "users": {
                "alice": { "groups": [], "shell": "/bin/sh", "comment": "Alice A." },
                "bob": { "shell": "/bin/bash", "groups": ["dev", "users"] }
            }
        }),
    );
    env.switch(&c2);
    assert_eq!(
        line(env, "/etc/passwd", "alice"),
        "alice:x:1001:1001:Alice A.:/home/alice:/bin/sh"
    );
    assert_eq!(line(env, "/etc/group", "dev"), "dev:x:1002:bob");
    env.run(&["verify"]).ok();
    let diff = env.run(&["diff", "1", "2"]).ok().stdout;
    for l in [
        r#"~ user alice  groups ["dev"] -> [], shell "/bin/bash" -> "/bin/sh", comment "Alice" -> "Alice A.""#,
        "~ user bob  password",
    ] {
        assert!(diff.lines().any(|d| d == l), "{l} not in:\n{diff}");
    }
    // An admin's change is drift that verify names (exit 1).
    d.chroot(&["usermod", "-s", "/bin/bash", "alice"]);
    let v = env.run(&["verify"]).expect(1);
    assert!(
        v.stdout
            .contains(r#"user alice: shell "/bin/bash", expected "/bin/sh""#),
        "{v:?}"
    );
    d.chroot(&["usermod", "-s", "/bin/sh", "alice"]);

    // Remove everything: alice and dev go, bob is put back exactly, and
    // alice's home is kept (her file went with the configuration).
    let empty = env.config("empty.json", json!({}));
    env.switch(&empty);
    assert_eq!(accounts(env), before);
    let kept = moved(&tree1, "/home/alice", "/home/.sysgen-homes/alice")
        .into_iter()
        .filter(|l| !l.contains("/.plan "))
        .chain(["/home/.sysgen-homes dir 0755 0:0".to_owned()]);
    same_tree(
        &tree(&d),
        &sorted(before_tree.lines().map(str::to_owned).chain(kept)),
    );
    let st = env.run(&["status"]).ok();
    assert!(
        st.stdout.contains(
            "home of removed user alice (/home/alice) kept at /home/.sysgen-homes/alice until gc"
        ),
        "{}",
        st.stdout
    );

    // gc of the generations that had alice deletes her kept home: the
    // root is as it was before sysgen.
    let gc = env.run(&["gc", "--keep", "1"]).ok();
    assert!(
        gc.stdout.contains("deleted the kept home of user alice"),
        "{}",
        gc.stdout
    );
    same_tree(&tree(&d), &before_tree);
    assert_eq!(accounts(env), before);
}

#[test]
fn rollback_makes_a_removed_user_again_with_its_ids_and_home() {
    let d = with_bob();
    let env = &d.env;
    env.switch(&first(env));
    let lines1 = account_lines(env);
    let tree1 = tree(&d);
    let id1 = env.run(&["build", s(&first(env))]).ok().stdout;

    // alice leaves; carol gets a new uid, never alice's (1001), and a gid
    // of her own (1002 is dev's).
    let c2 = env.config("c2.json", json!({ "users": { "carol": {} } }));
    env.switch(&c2);
    assert_eq!(line(env, "/etc/passwd", "alice"), "");
    assert_eq!(
        line(env, "/etc/passwd", "carol"),
        "carol:x:1002:1003::/home/carol:/bin/sh"
    );

    let carol = moved(&tree(&d), "/home/carol", "/home/.sysgen-homes/carol");

    // gc keeps what a kept generation needs: bob's hash, in the secret area.
    env.run(&["gc"]).ok();

    // Back: alice has uid 1001 again and her kept home back, with the file;
    // carol's home is kept in her place.
    env.run(&["rollback"]).ok();
    assert_eq!(account_lines(env), lines1);
    let area = "/home/.sysgen-homes dir 0755 0:0".to_owned();
    let want = tree1.lines().map(str::to_owned).chain(carol).chain([area]);
    same_tree(&tree(&d), &sorted(want));
    env.run(&["verify"]).ok();
    // A rebuild gives the same generation: the ids are recorded.
    assert_eq!(env.run(&["build", s(&first(env))]).ok().stdout, id1);
}

/// userdel removes a group of the user's name with the user; a group the
/// configuration keeps is made again at once, with its gid.
#[test]
fn a_group_named_after_a_removed_user_stays() {
    let d = DebEnv::new();
    let env = &d.env;
    let both = env.config(
        "both.json",
        json!({ "groups": { "erin": { "gid": 1500 } }, "users": { "erin": { "uid": 1500, "group": "erin" } } }),
    );
    env.switch(&both);
    assert_eq!(line(env, "/etc/group", "erin"), "erin:x:1500:");
    let group = env.config(
        "group.json",
        json!({ "groups": { "erin": { "gid": 1500 } } }),
    );
    let plan = env
        .run(&["--json", "switch", "--dry-run", s(&group)])
        .ok()
        .steps();
    assert_eq!(
        plan[..2],
        [
            "remove user erin, keep its home /home/erin until gc",
            "create group erin (gid 1500)",
        ]
    );
    assert!(plan[2].starts_with("activate generation 2"), "{plan:?}");
    env.switch(&group);
    assert_eq!(line(env, "/etc/passwd", "erin"), "");
    assert_eq!(line(env, "/etc/group", "erin"), "erin:x:1500:");
    env.run(&["verify"]).ok();
}

/// A password given as a secret (`secrets.<name>`, a 0600 file outside the
/// configuration): set on the root, never in any output, the manifest or a
/// world-readable file of the state.
#[test]
fn a_password_from_a_secret_is_set_and_never_shown() {
    let d = DebEnv::new();
    let env = &d.env;
    let hash = "$y$j9T$sysgentestsalt$secrethashvalue0123456789";
    let file = env.dir.path().join("erin.hash");
    fs::write(&file, format!("{hash}\n")).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let c = env.config(
        "s.json",
        json!({
            "secrets": { "erin_password": { "file": s(&file) } },
            "users": { "erin": { "password": { "secret": "erin_password" } } }
        }),
    );
    let mut out = String::new();
    for args in [
        vec!["--json", "switch", "--dry-run", s(&c)],
        vec!["-v", "switch", s(&c)],
        vec!["--json", "status"],
        vec!["status"],
        vec!["verify"],
    ] {
        let r = env.run(&args).ok();
        out.push_str(&r.stdout);
        out.push_str(&r.stderr);
    }
    assert!(!out.contains("secrethashvalue"), "{out}");
    assert!(
        line(env, "/etc/shadow", "erin").starts_with(&format!("erin:{hash}:")),
        "{}\n{out}",
        line(env, "/etc/shadow", "erin")
    );
    env.run(&["verify"]).ok();
    // Nowhere in the state a non-root user could read.
    for (path, md) in sysgen_tests::entries_under(&env.state()) {
        if md.is_file() && md.permissions().mode() & 0o004 != 0 {
            let bytes = fs::read(&path).unwrap();
            assert!(
                !bytes.windows(15).any(|w| w == b"secrethashvalue"),
                "{} holds the hash",
                path.display()
            );
        }
    }
    // An undeclared secret is refused, named.
    let bad = env.config(
        "b.json",
        json!({ "users": { "erin": { "password": { "secret": "nosuch" } } } }),
    );
    let r = env.run(&["switch", s(&bad)]).expect(2);
    assert!(
        r.stderr.contains(r#"no secret "nosuch" is declared"#),
        "{}",
        r.stderr
    );
}

#[test]
fn bad_accounts_exit_2_and_change_nothing() {
    let d = with_bob();
    let env = &d.env;
    let before = accounts(env);
    let before_tree = tree(&d);
    let unknown = env.config(
        "u.json",
        json!({ "users": { "alice": { "groups": ["nosuch"] } } }),
    );
    let r = env.run(&["switch", s(&unknown)]).expect(2);
    assert!(
        r.stderr.contains("users.alice") && r.stderr.contains("nosuch"),
        "{}",
        r.stderr
    );
    let bad_name = env.config("n.json", json!({ "users": { "Alice": {} } }));
    let r = env.run(&["switch", s(&bad_name)]).expect(2);
    assert!(
        r.stderr.contains("users.Alice: invalid name"),
        "{}",
        r.stderr
    );
    let clear = env.config(
        "p.json",
        json!({ "users": { "alice": { "password": "hunter2" } } }),
    );
    let r = env.run(&["switch", s(&clear)]).expect(2);
    assert!(
        r.stderr
            .contains("users.alice.password: a password is never written"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
    let hash = env.write_cfg("open.hash", "$6$x$y\n");
    fs::set_permissions(&hash, fs::Permissions::from_mode(0o644)).unwrap();
    let open = env.config(
        "h.json",
        json!({ "users": { "alice": { "password": { "hash_file": "open.hash" } } } }),
    );
    let r = env.run(&["switch", s(&open)]).expect(2);
    assert!(r.stderr.contains("chmod 0600"), "{}", r.stderr);
    // A uid another account has on the root is a conflict, named.
    let taken = env.config("t.json", json!({ "users": { "alice": { "uid": 1000 } } }));
    let r = env.run(&["switch", s(&taken)]).expect(1);
    assert!(
        r.stderr.contains("uid 1000 is taken by user bob"),
        "{}",
        r.stderr
    );
    assert_eq!(accounts(env), before);
    same_tree(&tree(&d), &before_tree);
}

/// The root as a crash test compares it: the account files' lines sorted
/// (a user made again is appended, wherever it was), and the rest whole.
fn state_of(d: &DebEnv) -> (String, String) {
    let rest = tree(d)
        .lines()
        .filter(|l| !ACCOUNT_FILES.contains(&l.split(' ').next().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n");
    (account_lines(&d.env), rest)
}

/// From `first` to a generation where alice and dev leave (her home kept),
/// ops and dave arrive and bob changes again; a crash after every step,
/// then `recover --rollback` lands exactly on the first generation and
/// `recover` (after the same crash again) exactly on the second.
#[test]
fn a_crash_after_every_step_recovers_both_ways() {
    let second = |env: &TestEnv| {
        env.config(
            "c2.json",
            json!({
                "groups": { "ops": {} },
                "users": {
                    "bob": { "shell": "/bin/dash", "groups": ["ops"], "password": "locked" },
                    "dave": { "groups": ["ops", "users"], "comment": "Dave" }
                },
                "files": { "/etc/motd": { "content": "ops\n", "owner": "dave", "group": "ops" } }
            }),
        )
    };
    // References from a root that never crashed.
    let clean = with_bob();
    let (c1, c2) = (first(&clean.env), second(&clean.env));
    clean.env.switch(&c1);
    let at_first = state_of(&clean);
    let steps = clean
        .env
        .run(&["--json", "switch", "--dry-run", s(&c2)])
        .ok()
        .steps();
    clean.env.switch(&c2);
    let at_second = state_of(&clean);
    assert!(
        at_second
            .0
            .contains("dave:x:1002:1003:Dave:/home/dave:/bin/sh"),
        "{}",
        at_second.0
    );
    assert!(
        steps.iter().any(|l| l.contains("remove user alice")),
        "{steps:?}"
    );

    for k in 1..steps.len() as u64 {
        let d = with_bob();
        let env = &d.env;
        let (c1, c2) = (first(env), second(env));
        env.switch(&c1);
        let crashed = env.run_with_fault(k, &["switch", s(&c2)]);
        assert!(crashed.killed, "step {k}: {crashed:?}");
        env.run(&["recover", "--rollback"]).ok();
        let (accounts, rest) = state_of(&d);
        assert_eq!(
            accounts,
            at_first.0,
            "recover --rollback after step {k} ({})",
            steps[k as usize - 1]
        );
        // A user the undone switch made is removed like any other: its
        // home is kept until gc.
        if rest.contains("/home/.sysgen-homes/dave ") {
            let kept = moved(&at_second.1, "/home/dave", "/home/.sysgen-homes/dave");
            let area = "/home/.sysgen-homes dir 0755 0:0".to_owned();
            let want = at_first
                .1
                .lines()
                .map(str::to_owned)
                .chain(kept)
                .chain([area]);
            same_tree(&rest, &sorted(want));
        } else {
            same_tree(&rest, &at_first.1);
        }
        let st = env.run(&["--json", "status"]).ok().json();
        assert_eq!(st["active"]["number"], 1, "after step {k}: {st}");
        env.run(&["verify"]).ok();

        let crashed = env.run_with_fault(k, &["switch", s(&c2)]);
        assert!(crashed.killed, "step {k}: {crashed:?}");
        env.run(&["recover"]).ok();
        let (accounts, rest) = state_of(&d);
        assert_eq!(
            accounts,
            at_second.0,
            "recover after step {k} ({})",
            steps[k as usize - 1]
        );
        same_tree(&rest, &at_second.1);
        let st = env.run(&["--json", "status"]).ok().json();
        assert_eq!(st["active"]["number"], 2, "after step {k}: {st}");
        env.run(&["verify"]).ok();
    }
}
