//! Secrets: a `secret: true` file's content, and its BLAKE3 hash, never
//! appear in any command's output; the store keeps it readable by root only;
//! the file on the root is 0600 by default.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::json;
use sysgen_tests::{Run, TestEnv, dump_tree};

const TOKEN_1: &str = "tok-Zq8VwM3pLr7Kx2Nd-first\n";
const TOKEN_2: &str = "tok-Hs5JbT9cYe4Ua6Gw-second\n";
const PASS_1: &str = "pw-Rf3Dq7Lm1Xz8Vc2B";
const PASS_2: &str = "pw-Ny6Kt4Pg9Wa2Qe5S";
const PUBLIC: &str = "welcome to the host\n";

fn hex(s: &str) -> String {
    blake3::hash(s.as_bytes()).to_hex().to_string()
}

/// Every form in which a secret must not leak: the text itself (also
/// without its trailing newline), its BLAKE3 hex, and 12-char prefixes of it.
fn forbidden(secrets: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for s in secrets {
        out.push((*s).to_owned());
        out.push(s.trim_end().to_owned());
        let h = hex(s);
        out.push(h[..12].to_owned());
        out.push(h.clone());
        // The stored hash may be shown in other forms (upper case).
        out.push(h[..12].to_uppercase());
    }
    out
}

#[track_caller]
fn assert_no_leak(what: &str, r: &Run, secrets: &[&str]) {
    assert!(
        !r.stderr.contains("panicked"),
        "{what} panicked:\n{}",
        r.stderr
    );
    for f in forbidden(secrets) {
        assert!(
            !r.stdout.contains(&f),
            "{what}: stdout holds {f:?} (secret text or its hash)\nstdout:\n{}",
            r.stdout
        );
        assert!(
            !r.stderr.contains(&f),
            "{what}: stderr holds {f:?} (secret text or its hash)\nstderr:\n{}",
            r.stderr
        );
    }
}

struct Secrets {
    env: TestEnv,
    config: PathBuf,
}

impl Secrets {
    /// cfg/c.json: /etc/app/token (secret, from a source), /etc/app/password
    /// (secret, inline content), /etc/motd (public).
    fn new(token: &str, pass: &str) -> Secrets {
        let env = TestEnv::new();
        env.write_cfg("secrets/token", token);
        let config = Self::write(&env, pass);
        Secrets { env, config }
    }

    fn write(env: &TestEnv, pass: &str) -> PathBuf {
        env.config(
            "c.json",
            json!({
                "files": {
                    "/etc/app/token": { "source": "secrets/token", "secret": true },
                    "/etc/app/password": { "content": pass, "secret": true, "owner": "www-data" },
                    "/etc/motd": { "content": PUBLIC }
                }
            }),
        )
    }

    fn c(&self) -> &str {
        self.config.to_str().unwrap()
    }

    /// Runs and checks nothing of `secrets` leaks; returns the run.
    #[track_caller]
    fn run(&self, args: &[&str], secrets: &[&str]) -> Run {
        let r = self.env.run(args);
        assert_no_leak(&args.join(" "), &r, secrets);
        r
    }

    fn store(&self) -> PathBuf {
        self.env.state().join("store")
    }
}

#[test]
fn secret_text_and_hash_never_appear_in_any_output() {
    let s = Secrets::new(TOKEN_1, PASS_1);
    let all = [TOKEN_1, TOKEN_2, PASS_1, PASS_2];
    let c = s.c().to_owned();
    // Sanity: the public file's hash prefix does appear where plans show
    // hashes (with -v), so the check below is not vacuous about output forms.
    let dry = s.run(&["switch", "--dry-run", "-v", &c], &all).ok();
    assert!(dry.stdout.contains("/etc/app/token"), "{}", dry.stdout);
    assert!(dry.stdout.contains(&hex(PUBLIC)[..12]), "{}", dry.stdout);
    s.run(&["switch", "-v", &c], &all).ok();
    s.run(&["build", "-v", "--json", &c], &all).ok().json();
    s.run(&["switch", "--json", "-v", &c], &all).ok().json();
    s.run(&["--json", "diff", &c], &all).ok().json();
    s.run(&["list", "-v"], &all).ok();
    s.run(&["status"], &all).ok();
    s.run(&["--json", "status"], &all).ok();
    s.run(&["verify", "-v"], &all).ok();
    s.run(&["verify", "-v", "--store"], &all).ok();
    s.run(&["--json", "verify", "-v", "--store"], &all).ok();

    // New secret content: the token source and the inline password change.
    s.env.write_cfg("secrets/token", TOKEN_2);
    Secrets::write(&s.env, PASS_2);
    s.run(&["diff", &c], &all).ok();
    s.run(&["diff", "-v", &c], &all).ok();
    s.run(&["--json", "diff", &c], &all).ok();
    let dry = s.run(&["switch", "--dry-run", &c], &all).ok();
    assert!(dry.stdout.contains("/etc/app/password"), "{}", dry.stdout);
    s.run(&["switch", "--dry-run", "-v", "--json", &c], &all)
        .ok();
    s.run(&["switch", "--json", "-v", &c], &all).ok();
    // Two generations now: the default diff (previous vs active), all forms.
    let d = s.run(&["diff"], &all).ok();
    assert!(d.stdout.contains("/etc/app/token"), "{}", d.stdout);
    let dj = s.run(&["diff", "--json"], &all).ok().json();
    let changed: Vec<&str> = dj["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(
        changed.contains(&"/etc/app/token") && changed.contains(&"/etc/app/password"),
        "{dj}"
    );
    s.run(&["diff", "-v"], &all).ok();
    s.run(&["diff", "1", "2", "--json", "-v"], &all).ok();
    s.run(&["list", "-v", "--json"], &all).ok();
    s.run(&["status", "-v"], &all).ok();
    s.run(&["verify", "-v"], &all).ok();
    s.run(&["rollback", "--dry-run", "-v"], &all).ok();
    s.run(&["rollback", "-v", "--json"], &all).ok();
    s.run(&["rollback", "-v"], &all).ok();
    s.run(&["gc", "--dry-run", "-v"], &all).ok();

    // Drift of a secret file: verify, the refused switch, and --force all
    // name the path but never the content (old, new or drifted) or a hash.
    let drifted = "drifted-Ux7Bn2Mk5Jq9Hp3T\n";
    let all3 = [TOKEN_1, TOKEN_2, PASS_1, PASS_2, drifted];
    fs::write(s.env.at("/etc/app/token"), drifted).unwrap();
    let v = s.run(&["verify", "-v"], &all3).expect(1);
    assert!(v.stdout.contains("/etc/app/token"), "{}", v.stdout);
    s.run(&["--json", "verify"], &all3).expect(1);
    s.run(&["status", "--json"], &all3).ok();
    let r = s.run(&["rollback", "-v"], &all3).expect(1);
    assert!(r.stderr.contains("/etc/app/token"), "{}", r.stderr);
    s.run(&["rollback", "--dry-run", "--force"], &all3);
}

/// `switch --force` over a drifted secret file saves the changed file in the
/// store and reports it: the report must not print the hash of that
/// content (it is the content of a secret path).
#[test]
fn force_over_a_drifted_secret_does_not_print_its_hash() {
    let s = Secrets::new(TOKEN_1, PASS_1);
    let c = s.c().to_owned();
    s.run(&["switch", &c], &[TOKEN_1, PASS_1]).ok();
    let drifted = "drifted-Ux7Bn2Mk5Jq9Hp3T\n";
    fs::write(s.env.at("/etc/app/token"), drifted).unwrap();
    s.env.write_cfg("secrets/token", TOKEN_2);
    let all = [TOKEN_1, TOKEN_2, PASS_1, drifted];
    s.run(&["switch", "--force", "-v", &c], &all).ok();
    s.run(&["--json", "rollback", "--force", "-v"], &all);
}

/// A host file already at a path that a configuration now declares secret
/// is saved first and put back when the path leaves the configuration:
/// neither the switch nor the restoring switch (nor their dry runs) may
/// print it or its hash.
#[test]
fn host_file_replaced_by_a_secret_is_not_shown() {
    let s = Secrets::new(TOKEN_1, PASS_1);
    let host = "host-token-Wd4Ls8Ft1Gy6Rk3Z\n";
    s.env.write_root("/etc/app/token", host);
    let all = [TOKEN_1, PASS_1, host];
    let c = s.c().to_owned();
    s.run(&["switch", "--dry-run", "-v", &c], &all).ok();
    s.run(&["switch", "-v", "--json", &c], &all).ok();
    let empty = s.env.config("empty.json", json!({}));
    let e = empty.to_str().unwrap();
    s.run(&["switch", "--dry-run", "-v", e], &all).ok();
    s.run(&["diff", "-v", e], &all).ok();
    s.run(&["switch", "-v", e], &all).ok();
    assert_eq!(
        fs::read_to_string(s.env.at("/etc/app/token")).unwrap(),
        host
    );
    s.run(&["rollback", "-v", "--dry-run"], &all).ok();
}

/// `verify --store` names a corrupt store object by its hash; for a secret
/// object that hash is the BLAKE3 of the secret content.
#[test]
fn corrupt_secret_object_is_not_named_by_its_hash() {
    let s = Secrets::new(TOKEN_1, PASS_1);
    let c = s.c().to_owned();
    s.run(&["switch", &c], &[TOKEN_1, PASS_1]).ok();
    sysgen_tests::damage_stored(&s.store(), TOKEN_1.as_bytes(), true);
    let r = s.run(&["verify", "--store"], &[TOKEN_1, PASS_1]);
    assert_eq!(r.code, Some(1), "a corrupt object is a verify failure");
    s.run(&["--json", "verify", "--store"], &[TOKEN_1, PASS_1]);
}

#[test]
fn secret_store_objects_are_root_only() {
    let s = Secrets::new(TOKEN_1, PASS_1);
    let c = s.c().to_owned();
    s.run(&["switch", &c], &[TOKEN_1, PASS_1]).ok();
    let store = s.store();
    let holds =
        |content: &str, secret| sysgen_tests::store_holds(&store, content.as_bytes(), secret);
    // Everything in the secret area, packs and their directory included, is
    // root's alone.
    let secret_area = sysgen_tests::entries_under(&store.join("secret"));
    assert!(secret_area.len() > 2, "{}", dump_tree(&store, &[]));
    for (p, md) in &secret_area {
        let mode = if md.is_dir() { 0o700 } else { 0o600 };
        assert!(md.is_dir() || md.is_file(), "{}", p.display());
        assert_eq!(md.mode() & 0o7777, mode, "{}", p.display());
        assert_eq!((md.uid(), md.gid()), (0, 0), "{}", p.display());
    }
    for content in [TOKEN_1, PASS_1] {
        assert!(
            holds(content, true),
            "{content:?}\n{}",
            dump_tree(&store, &[])
        );
        // Not in the public area: neither under its hash, nor its stored
        // frame, nor in clear.
        assert!(!holds(content, false), "{content:?} is in the public area");
        let h = hex(content);
        let public = dump_tree(&store.join("objects"), &[]);
        assert!(
            !public.contains(&h[2..]),
            "{content:?} is in the public area:\n{public}"
        );
        let objects = store.join("objects");
        assert!(!sysgen_tests::any_file_contains(
            &objects,
            &sysgen_tests::stored_frame(content.as_bytes())
        ));
        assert!(!sysgen_tests::any_file_contains(
            &objects,
            content.trim_end().as_bytes()
        ));
    }
    // The public file is in the public area, found by the same checks, so
    // they can fail.
    assert!(holds(PUBLIC, false), "{}", dump_tree(&store, &[]));
    assert!(sysgen_tests::any_file_contains(
        &store.join("objects"),
        &sysgen_tests::stored_frame(PUBLIC.as_bytes())
    ));
    // Nothing in the state directory outside the secret area holds the
    // secret text in clear (the database, the journal, the public store).
    let state = s.env.state();
    for content in [TOKEN_1, PASS_1] {
        let needle = content.trim_end().as_bytes();
        for e in fs::read_dir(&state).unwrap() {
            let p = e.unwrap().path();
            if p == store {
                continue;
            }
            let holds = if p.is_dir() {
                sysgen_tests::any_file_contains(&p, needle)
            } else {
                fs::read(&p)
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle)
            };
            assert!(
                !holds,
                "{} holds the secret {content:?} in clear",
                p.display()
            );
        }
    }
    // The store keeps secrets after a change of content and a gc too.
    s.env.write_cfg("secrets/token", TOKEN_2);
    s.run(&["switch", &c], &[TOKEN_1, TOKEN_2, PASS_1]).ok();
    assert!(sysgen_tests::store_holds(&store, TOKEN_2.as_bytes(), true));
    s.run(&["gc", "--keep", "1"], &[TOKEN_1, TOKEN_2, PASS_1])
        .ok();
    assert!(
        !sysgen_tests::store_holds(&store, TOKEN_1.as_bytes(), true),
        "gc frees the unreferenced secret"
    );
    assert!(sysgen_tests::store_holds(&store, TOKEN_2.as_bytes(), true));
    assert!(sysgen_tests::store_holds(&store, PASS_1.as_bytes(), true));
    for (p, md) in sysgen_tests::entries_under(&store.join("secret")) {
        assert_eq!(
            md.mode() & 0o7777,
            if md.is_dir() { 0o700 } else { 0o600 },
            "{}",
            p.display()
        );
    }
}

#[test]
fn secret_file_on_the_root_is_0600_by_default() {
    let s = Secrets::new(TOKEN_1, PASS_1);
    let env = &s.env;
    // A declared mode wins over the secret default; the default is 0600.
    let c = env.config(
        "m.json",
        json!({
            "files": {
                "/etc/app/token": { "source": "secrets/token", "secret": true },
                "/etc/app/password": { "content": PASS_1, "secret": true },
                "/etc/app/shared": { "content": "s\n", "secret": true, "mode": "0640" },
                "/etc/motd": { "content": PUBLIC }
            }
        }),
    );
    env.run(&["switch", c.to_str().unwrap()]).ok();
    let tree = env.tree();
    let mode = |p: &str| fs::symlink_metadata(env.at(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("/etc/app/token"), 0o600, "{tree}");
    assert_eq!(mode("/etc/app/password"), 0o600, "{tree}");
    assert_eq!(mode("/etc/app/shared"), 0o640, "{tree}");
    assert_eq!(mode("/etc/motd"), 0o644, "{tree}");
    assert_eq!(
        fs::read_to_string(env.at("/etc/app/token")).unwrap(),
        TOKEN_1
    );
    assert_eq!(
        fs::read_to_string(env.at("/etc/app/password")).unwrap(),
        PASS_1
    );
    // Even with a permissive umask-independent source mode, the source's
    // mode does not leak into the root.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(
        env.cfg().join("secrets/token"),
        fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    env.write_cfg("secrets/token", TOKEN_2);
    env.run(&["switch", c.to_str().unwrap()]).ok();
    assert_eq!(mode("/etc/app/token"), 0o600);
    assert_eq!(
        fs::read_to_string(env.at("/etc/app/token")).unwrap(),
        TOKEN_2
    );
    env.run(&["verify"]).ok();
}

/// Whether a user other than root can read `p`: every directory from the
/// root down has o+x and the file has o+r.
fn world_readable(root: &Path, p: &Path) -> bool {
    let mode = |q: &Path| fs::metadata(q).map_or(0, |m| m.mode());
    let mut dir = p.parent();
    while let Some(d) = dir {
        if mode(d) & 0o001 == 0 {
            return false;
        }
        if d == root {
            break;
        }
        dir = d.parent();
    }
    mode(p) & 0o004 != 0
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => files_under(&p, out),
            Ok(m) if m.is_file() => out.push(p),
            _ => {}
        }
    }
}

/// "stored where only root can read it": a low-entropy secret's BLAKE3 is
/// as good as the secret (it can be brute-forced offline), so no file that
/// other users can read may hold it, in hex or raw.
#[test]
fn no_world_readable_state_file_holds_a_secret_hash() {
    let s = Secrets::new(TOKEN_1, "hunter2");
    s.run(&["switch", s.c()], &[TOKEN_1, "hunter2"]).ok();
    let mut files = Vec::new();
    files_under(&s.env.state(), &mut files);
    assert!(files.iter().any(|f| f.ends_with("sysgen.db")), "{files:?}");
    let mut leaks = Vec::new();
    for f in &files {
        if !world_readable(&s.env.root(), f) {
            continue;
        }
        let bytes = fs::read(f).unwrap();
        for secret in [TOKEN_1, "hunter2"] {
            let h = blake3::hash(secret.as_bytes());
            let hexs = h.to_hex();
            let holds = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
            if holds(hexs.as_bytes()) || holds(h.as_bytes()) || holds(secret.as_bytes()) {
                leaks.push(format!("{} holds the hash of {secret:?}", f.display()));
            }
        }
    }
    assert!(leaks.is_empty(), "{leaks:#?}");
}
