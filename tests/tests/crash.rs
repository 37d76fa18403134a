//! Crash safety (SPEC §3 fault injection, §4 crash safety), on real temp
//! roots: for several transitions, a crash is injected after EVERY step of
//! the plan; then the interrupted state must be reported and must block the
//! other mutating commands, and `recover` must land exactly on the target
//! tree, `recover --rollback` exactly on the tree the transition started
//! from (whole trees compared with reference roots that never crashed).
//! A crash during `recover` itself must not change that.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, symlink};

use serde_json::{Value, json};
use sysgen_tests::{Run, TestEnv};

/// One transition under test: `setup` brings a fresh root to the "from"
/// state and returns the command (arguments) whose run is interrupted.
#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    setup: fn(&TestEnv) -> Vec<String>,
    /// The generation active before the command (None: before sysgen).
    from: Option<u64>,
    /// The generation the command makes active.
    to: u64,
}

/// Reference trees, from a root that never crashed.
struct Refs {
    from_tree: String,
    to_tree: String,
    /// Number of steps of the plan (the last is the activation).
    n: u64,
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn mode(env: &TestEnv, p: &str, m: u32) {
    fs::set_permissions(env.at(p), fs::Permissions::from_mode(m)).unwrap();
}

/// A host as sysgen finds it: `/var/lib` exists (the state directory goes
/// there), so the pre-sysgen tree is comparable with the tree after undoing.
fn host(env: &TestEnv) {
    fs::create_dir_all(env.at("/var/lib")).unwrap();
}

// ---------------------------------------------------------------- scenario 1

fn first_config() -> Value {
    json!({
        "files": {
            "/etc/motd": { "content": "Welcome\n" },
            "/etc/app/app.conf": { "content": "port = 80\n", "mode": "0600" },
            "/etc/app/run.sh": { "content": "#!/bin/sh\nexec app\n", "mode": "0755" },
            "/srv/www/index.html": { "content": "<h1>hi</h1>\n" },
            "/srv/www/static/style.css": { "content": "body{}\n", "mode": "0600" },
            "/opt/tool/deep/nested/file": { "content": "" }
        },
        "directories": {
            "/srv/www": { "mode": "0750" },
            "/var/cache/app": { "mode": "0700" },
            "/srv/empty": {}
        },
        "symlinks": {
            "/etc/app/current": "run.sh",
            "/usr/local/bin/app": "/etc/app/run.sh",
            "/etc/localtime": "/usr/share/zoneinfo/UTC"
        }
    })
}

/// An empty-ish root with a file and a symlink at declared paths (both are
/// saved before the first switch replaces them).
fn setup_first(env: &TestEnv) -> Vec<String> {
    host(env);
    env.write_root("/etc/motd", "the admin's motd\n");
    mode(env, "/etc/motd", 0o640);
    chown(env.at("/etc/motd"), Some(0), Some(33)).unwrap();
    symlink("/usr/share/zoneinfo/Europe/Paris", env.at("/etc/localtime")).unwrap();
    env.write_root("/srv/unrelated", "not sysgen's\n");
    let c1 = env.config("c1.json", first_config());
    vec!["switch".into(), c1.to_str().unwrap().into()]
}

const FIRST: Scenario = Scenario {
    name: "first switch",
    setup: setup_first,
    from: None,
    to: 1,
};

// ---------------------------------------------------------------- scenario 2

fn gen1_config() -> Value {
    json!({
        "files": {
            "/etc/hosts": { "content": "managed hosts\n" },
            "/etc/keep": { "content": "same\n" },
            "/etc/content": { "content": "v1\n" },
            "/etc/mode": { "content": "m\n", "mode": "0644" },
            "/etc/both": { "content": "b1\n", "mode": "0644" },
            "/etc/old": { "content": "gone\n" },
            "/opt/f2d": { "content": "a file, then a directory\n" },
            "/opt/d2f/a": { "content": "a\n" },
            "/opt/d2f/sub/b": { "content": "b\n", "mode": "0600" },
            "/srv/data/managed.txt": { "content": "managed\n" }
        },
        "directories": {
            "/srv/data": { "mode": "0750" },
            "/var/app": { "mode": "0750" }
        },
        "symlinks": {
            "/etc/link": "content",
            "/etc/gone-link": "/nowhere",
            "/etc/s2f": "keep"
        }
    })
}

fn gen2_config() -> Value {
    json!({
        "files": {
            "/etc/issue": { "content": "managed issue\n" },
            "/etc/keep": { "content": "same\n" },
            "/etc/content": { "content": "v2\n" },
            "/etc/mode": { "content": "m\n", "mode": "0600" },
            "/etc/both": { "content": "b2\n", "mode": "0755" },
            "/etc/new": { "content": "new\n" },
            "/opt/f2d/inner": { "content": "inside\n" },
            "/opt/d2f": { "content": "a directory, then a file\n", "mode": "0600" },
            "/new/deep/dir/file": { "content": "deep\n" },
            "/etc/s2f": { "content": "was a symlink\n" }
        },
        "directories": {
            "/var/app": { "mode": "0700" }
        },
        "symlinks": {
            "/etc/link": "mode",
            "/etc/new-link": "/etc/new"
        }
    })
}

/// Root at generation 1 (which took over the admin's `/etc/hosts`), with an
/// unmanaged file in a managed directory that generation 2 drops, and an
/// admin's `/etc/issue` that generation 2 takes over.
fn setup_gen1(env: &TestEnv) -> (String, String) {
    host(env);
    env.write_root("/etc/hosts", "127.0.0.1 localhost\n");
    mode(env, "/etc/hosts", 0o640);
    chown(env.at("/etc/hosts"), Some(0), Some(33)).unwrap();
    env.write_root("/etc/issue", "Debian GNU/Linux\n");
    mode(env, "/etc/issue", 0o600);
    let c1 = env.config("c1.json", gen1_config());
    let c2 = env.config("c2.json", gen2_config());
    let (c1, c2) = (
        c1.to_str().unwrap().to_owned(),
        c2.to_str().unwrap().to_owned(),
    );
    env.run(&["switch", &c1]).ok();
    env.write_root("/srv/data/admin.txt", "the admin's notes\n");
    (c1, c2)
}

fn setup_change(env: &TestEnv) -> Vec<String> {
    let (_, c2) = setup_gen1(env);
    vec!["switch".into(), c2]
}

const CHANGE: Scenario = Scenario {
    name: "change switch 1 -> 2",
    setup: setup_change,
    from: Some(1),
    to: 2,
};

// ---------------------------------------------------------- scenario 2 bis

/// A change without any type change (add, remove, content, mode, symlink
/// target, directory mode, restore of a taken-over file), so that failures
/// tied to retyping do not hide the others.
fn setup_simple(env: &TestEnv) -> Vec<String> {
    host(env);
    env.write_root("/etc/hosts", "127.0.0.1 localhost\n");
    mode(env, "/etc/hosts", 0o640);
    let c1 = env.config(
        "c1.json",
        json!({
            "files": {
                "/etc/hosts": { "content": "managed hosts\n" },
                "/etc/content": { "content": "v1\n" },
                "/etc/mode": { "content": "m\n" },
                "/etc/old": { "content": "old\n" },
                "/srv/a/b/old": { "content": "old\n" }
            },
            "directories": { "/var/app": { "mode": "0750" } },
            "symlinks": { "/etc/link": "content" }
        }),
    );
    let c2 = env.config(
        "c2.json",
        json!({
            "files": {
                "/etc/content": { "content": "v2\n" },
                "/etc/mode": { "content": "m\n", "mode": "0600" },
                "/etc/new": { "content": "new\n" },
                "/srv/c/d/new": { "content": "new\n" }
            },
            "directories": { "/var/app": { "mode": "0700" } },
            "symlinks": { "/etc/link": "mode" }
        }),
    );
    env.run(&["switch", c1.to_str().unwrap()]).ok();
    vec!["switch".into(), c2.to_str().unwrap().into()]
}

const SIMPLE: Scenario = Scenario {
    name: "change switch 1 -> 2 without type changes",
    setup: setup_simple,
    from: Some(1),
    to: 2,
};

// ---------------------------------------------------------------- scenario 3

fn setup_rollback(env: &TestEnv) -> Vec<String> {
    let (_, c2) = setup_gen1(env);
    env.run(&["switch", &c2]).ok();
    vec!["rollback".into()]
}

const ROLLBACK: Scenario = Scenario {
    name: "rollback 2 -> 1",
    setup: setup_rollback,
    from: Some(2),
    to: 1,
};

// ------------------------------------------------------------------ helpers

/// The active generation per `list --json`.
fn active(env: &TestEnv) -> Option<u64> {
    let r = env.run(&["--json", "list"]);
    // Before the first switch there is no state, and `list` says so
    // (exit 1) rather than make one: no generation is active.
    if r.code == Some(1) && r.stderr.contains("no sysgen state here") {
        return None;
    }
    let v = r.ok().json();
    let active = v["active"].as_u64();
    let marked: Vec<u64> = v["generations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["active"] == json!(true))
        .map(|g| g["number"].as_u64().unwrap())
        .collect();
    assert_eq!(
        marked,
        active.into_iter().collect::<Vec<_>>(),
        "list --json: the active marker disagrees with \"active\": {v}"
    );
    active
}

/// The plan of `cmd`, from `--dry-run --json`.
fn plan(env: &TestEnv, cmd: &[String], to: u64) -> Vec<String> {
    let mut args = strs(cmd);
    args.extend(["--dry-run", "--json"]);
    let v = env.run(&args).ok().json();
    let steps: Vec<String> = v["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps in {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    let last = steps.last().expect("a plan has at least its activation");
    assert!(
        last.starts_with(&format!("activate generation {to} ")),
        "the last step is not the activation of {to}: {steps:#?}"
    );
    steps
}

fn refs(sc: &Scenario) -> Refs {
    let env = TestEnv::new();
    let cmd = (sc.setup)(&env);
    assert_eq!(active(&env), sc.from);
    let from_tree = env.tree();
    let n = plan(&env, &cmd, sc.to).len() as u64;
    assert_eq!(env.tree(), from_tree, "--dry-run changed the root");
    env.run(&strs(&cmd)).ok();
    let to_tree = env.tree();
    assert_ne!(
        from_tree, to_tree,
        "{}: the transition changes nothing",
        sc.name
    );
    assert_eq!(active(&env), Some(sc.to));
    env.run(&["verify"]).ok();
    Refs {
        from_tree,
        to_tree,
        n,
    }
}

/// A fresh root in the "from" state, crashed after step `k` of the command.
fn crashed(sc: &Scenario, refs: &Refs, k: u64) -> TestEnv {
    let env = TestEnv::new();
    let cmd = (sc.setup)(&env);
    assert_eq!(
        env.tree(),
        refs.from_tree,
        "{}: setup is not repeatable",
        sc.name
    );
    let r = env.run_with_fault(k, &strs(&cmd));
    assert!(
        r.killed,
        "{}: k={k} of n={}: the fault did not kill the process: {r:?}",
        sc.name, refs.n
    );
    assert_interrupted(&env, sc, k);
    env
}

/// `status` reports the interrupted switch; `switch`, `gc` and `rollback`
/// refuse with exit 1, say to run `sysgen recover`, and change nothing.
fn assert_interrupted(env: &TestEnv, sc: &Scenario, k: u64) {
    let ctx = format!("{}, crash after step {k}", sc.name);
    let st = env.run(&["--json", "status"]).ok().json();
    assert_eq!(
        st["interrupted"]["to"],
        json!(sc.to),
        "{ctx}: status --json: {st}"
    );
    assert_eq!(
        st["interrupted"]["from"],
        json!(sc.from),
        "{ctx}: status --json: {st}"
    );
    let text = env.run(&["status"]).ok();
    assert!(
        text.stdout.contains("interrupted") && text.stdout.contains("sysgen recover"),
        "{ctx}: status does not report the interrupted switch: {text:?}"
    );
    let before = env.tree();
    let c1 = env.cfg().join("c1.json");
    let refusing: [&[&str]; 4] = [
        &["switch", c1.to_str().unwrap()],
        &["gc"],
        &["rollback"],
        &["rollback", "--to", "1"],
    ];
    for args in refusing {
        let r = env.run(args);
        assert_eq!(r.code, Some(1), "{ctx}: {args:?} did not refuse: {r:?}");
        assert!(
            r.stderr.contains("sysgen recover"),
            "{ctx}: {args:?} does not say to run `sysgen recover`: {r:?}"
        );
    }
    assert_eq!(
        env.tree(),
        before,
        "{ctx}: a refused command changed the root"
    );
    let st2 = env.run(&["--json", "status"]).ok().json();
    assert_eq!(
        st2["interrupted"], st["interrupted"],
        "{ctx}: a refused command changed the journal"
    );
}

/// Panics unless `got == want`, with what differs on the message's first line.
#[track_caller]
fn assert_tree(got: &str, want: &str, ctx: &str) {
    if got == want {
        return;
    }
    let g: std::collections::BTreeSet<&str> = got.lines().collect();
    let w: std::collections::BTreeSet<&str> = want.lines().collect();
    let missing: Vec<&str> = w.difference(&g).copied().collect();
    let extra: Vec<&str> = g.difference(&w).copied().collect();
    panic!("{ctx}: missing {missing:?}, unexpected {extra:?}\nwhole tree:\n{got}");
}

fn assert_no_interrupted(env: &TestEnv, ctx: &str) {
    let st = env.run(&["--json", "status"]).ok().json();
    assert!(
        st["interrupted"].is_null(),
        "{ctx}: still interrupted: {st}"
    );
}

#[track_caller]
fn assert_at_to(env: &TestEnv, sc: &Scenario, refs: &Refs, ctx: &str) {
    assert_tree(
        &env.tree(),
        &refs.to_tree,
        &format!("{ctx}: the root is not the target"),
    );
    assert_eq!(active(env), Some(sc.to), "{ctx}: wrong active generation");
    assert_no_interrupted(env, ctx);
    let v = env.run(&["verify"]);
    assert_eq!(v.code, Some(0), "{ctx}: verify: {v:?}");
}

#[track_caller]
fn assert_at_from(env: &TestEnv, sc: &Scenario, refs: &Refs, ctx: &str) {
    assert_tree(
        &env.tree(),
        &refs.from_tree,
        &format!("{ctx}: the root is not back where it started"),
    );
    assert_eq!(active(env), sc.from, "{ctx}: wrong active generation");
    assert_no_interrupted(env, ctx);
    let v = env.run(&["verify"]);
    assert_eq!(v.code, Some(0), "{ctx}: verify: {v:?}");
}

fn recover(env: &TestEnv, args: &[&str], ctx: &str) -> Run {
    let r = env.run(args);
    assert_eq!(r.code, Some(0), "{ctx}: {args:?} failed: {r:?}");
    r
}

#[derive(Clone, Copy, Debug)]
enum Then {
    /// `recover`: the target, exactly.
    Recover,
    /// `recover --rollback`: the starting point, exactly.
    RecoverRollback,
    /// `recover` crashes after its first step; `recover` again.
    CrashInRecover,
    /// `recover --rollback` crashes after its first step; the same again.
    CrashInRecoverRollback,
}

fn crash_every_step(sc: Scenario, then: Then) {
    let refs = refs(&sc);
    assert!(refs.n >= 2, "{}: plan too short", sc.name);
    // Every k is checked, and every failing k reported, not only the first.
    let mut failed = Vec::new();
    for k in 1..=refs.n {
        let one = std::panic::catch_unwind(|| crash_at(&sc, &refs, k, then));
        if let Err(e) = one {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failed.push(format!("k={k}: {}", msg.lines().next().unwrap_or_default()));
        }
    }
    assert!(
        failed.is_empty(),
        "{}, then {then:?}: {} of {} crash points fail:\n{}",
        sc.name,
        failed.len(),
        refs.n,
        failed.join("\n")
    );
}

fn crash_at(sc: &Scenario, refs: &Refs, k: u64, then: Then) {
    let ctx = format!(
        "{}, crash after step {k} of {}, then {then:?}",
        sc.name, refs.n
    );
    let env = crashed(sc, refs, k);
    match then {
        Then::Recover => {
            recover(&env, &["recover"], &ctx);
            assert_at_to(&env, sc, refs, &ctx);
        }
        Then::RecoverRollback => {
            recover(&env, &["recover", "--rollback"], &ctx);
            assert_at_from(&env, sc, refs, &ctx);
        }
        Then::CrashInRecover => {
            let r = env.run_with_fault(1, &["recover"]);
            assert!(r.killed, "{ctx}: recover was not killed: {r:?}");
            assert_interrupted(&env, sc, k);
            recover(&env, &["recover"], &ctx);
            assert_at_to(&env, sc, refs, &ctx);
        }
        Then::CrashInRecoverRollback => {
            let r = env.run_with_fault(1, &["recover", "--rollback"]);
            assert!(r.killed, "{ctx}: recover --rollback was not killed: {r:?}");
            let st = env.run(&["--json", "status"]).ok().json();
            assert!(
                !st["interrupted"].is_null(),
                "{ctx}: a crashed recover --rollback left no interrupted switch: {st}"
            );
            recover(&env, &["recover", "--rollback"], &ctx);
            assert_at_from(&env, sc, refs, &ctx);
        }
    }
    // The root is usable again: the next mutating command works.
    let c1 = env.cfg().join("c1.json");
    env.run(&["switch", c1.to_str().unwrap()]).ok();
    env.run(&["verify"]).ok();
}

/// A fault point past the last step never fires: the command completes.
fn fault_past_the_end(sc: Scenario) {
    let refs = refs(&sc);
    let env = TestEnv::new();
    let cmd = (sc.setup)(&env);
    let r = env.run_with_fault(refs.n + 1, &strs(&cmd));
    assert!(!r.killed, "{}: killed with k = n + 1: {r:?}", sc.name);
    assert_eq!(r.code, Some(0), "{}: {r:?}", sc.name);
    assert_at_to(&env, &sc, &refs, sc.name);
    // And recover has nothing to do.
    let r = env.run(&["--json", "recover"]).ok().json();
    assert_eq!(r["recover"]["interrupted"], json!(false), "{r}");
    assert_eq!(env.tree(), refs.to_tree);
}

// -------------------------------------------------------------------- tests

#[test]
fn reference_trees_show_what_each_transition_does() {
    // Guards the scenarios themselves: the references hold what the
    // scenario claims to exercise, so the crash tests below cannot pass on
    // transitions that do nothing.
    let f = refs(&FIRST);
    assert!(
        f.from_tree.contains("/etc/motd file 0640 0:33"),
        "{}",
        f.from_tree
    );
    assert!(
        f.from_tree
            .contains("/etc/localtime symlink 0:0 -> /usr/share/zoneinfo/Europe/Paris")
    );
    assert!(f.to_tree.contains("/etc/motd file 0644"), "{}", f.to_tree);
    assert!(
        f.to_tree
            .contains("/etc/localtime symlink 0:0 -> /usr/share/zoneinfo/UTC")
    );
    assert!(f.to_tree.contains("/srv/unrelated file"));

    let c = refs(&CHANGE);
    for line in [
        "/etc/hosts file 0644",
        "/etc/old file",
        "/opt/f2d file",
        "/opt/d2f dir",
        "/srv/data dir 0750",
        "/srv/data/admin.txt file",
        "/etc/s2f symlink",
        "/var/app dir 0750",
        "/etc/issue file 0600",
    ] {
        assert!(
            c.from_tree.contains(line),
            "gen1 lacks {line}:\n{}",
            c.from_tree
        );
    }
    for line in [
        "/etc/hosts file 0640 0:33",
        "/opt/f2d dir",
        "/opt/f2d/inner file",
        "/opt/d2f file 0600",
        "/srv/data dir",
        "/srv/data/admin.txt file",
        "/etc/s2f file 0644",
        "/var/app dir 0700",
        "/etc/mode file 0600",
        "/etc/both file 0755",
        "/etc/issue file 0644",
        "/etc/link symlink 0:0 -> mode",
        "/new/deep/dir/file file 0644",
    ] {
        assert!(
            c.to_tree.contains(line),
            "gen2 lacks {line}:\n{}",
            c.to_tree
        );
    }
    for gone in [
        "/etc/old ",
        "/etc/gone-link ",
        "/opt/d2f/a ",
        "/srv/data/managed.txt ",
    ] {
        assert!(!c.to_tree.contains(gone), "gen2 has {gone}:\n{}", c.to_tree);
    }

    let r = refs(&ROLLBACK);
    assert_eq!(r.from_tree, c.to_tree);
    assert_eq!(
        r.to_tree, c.from_tree,
        "a rollback does not restore generation 1"
    );
}

#[test]
fn first_switch_crash_at_every_step_then_recover() {
    crash_every_step(FIRST, Then::Recover);
}

#[test]
fn first_switch_crash_at_every_step_then_recover_rollback() {
    crash_every_step(FIRST, Then::RecoverRollback);
}

#[test]
fn first_switch_crash_at_every_step_then_crash_in_recover() {
    crash_every_step(FIRST, Then::CrashInRecover);
}

#[test]
fn first_switch_crash_at_every_step_then_crash_in_recover_rollback() {
    crash_every_step(FIRST, Then::CrashInRecoverRollback);
}

#[test]
fn change_switch_crash_at_every_step_then_recover() {
    crash_every_step(CHANGE, Then::Recover);
}

#[test]
fn change_switch_crash_at_every_step_then_recover_rollback() {
    crash_every_step(CHANGE, Then::RecoverRollback);
}

#[test]
fn change_switch_crash_at_every_step_then_crash_in_recover() {
    crash_every_step(CHANGE, Then::CrashInRecover);
}

#[test]
fn change_switch_crash_at_every_step_then_crash_in_recover_rollback() {
    crash_every_step(CHANGE, Then::CrashInRecoverRollback);
}

#[test]
fn simple_change_crash_at_every_step_then_recover() {
    crash_every_step(SIMPLE, Then::Recover);
}

#[test]
fn simple_change_crash_at_every_step_then_recover_rollback() {
    crash_every_step(SIMPLE, Then::RecoverRollback);
}

#[test]
fn simple_change_crash_at_every_step_then_crash_in_recover() {
    crash_every_step(SIMPLE, Then::CrashInRecover);
}

#[test]
fn simple_change_crash_at_every_step_then_crash_in_recover_rollback() {
    crash_every_step(SIMPLE, Then::CrashInRecoverRollback);
}

#[test]
fn rollback_crash_at_every_step_then_recover() {
    crash_every_step(ROLLBACK, Then::Recover);
}

#[test]
fn rollback_crash_at_every_step_then_recover_rollback() {
    crash_every_step(ROLLBACK, Then::RecoverRollback);
}

#[test]
fn rollback_crash_at_every_step_then_crash_in_recover() {
    crash_every_step(ROLLBACK, Then::CrashInRecover);
}

#[test]
fn rollback_crash_at_every_step_then_crash_in_recover_rollback() {
    crash_every_step(ROLLBACK, Then::CrashInRecoverRollback);
}

#[test]
fn fault_past_the_last_step_does_not_fire() {
    fault_past_the_end(FIRST);
    fault_past_the_end(CHANGE);
    fault_past_the_end(SIMPLE);
    fault_past_the_end(ROLLBACK);
}
