//! Symlinks planted in the root, absolute and relative, pointing outside it,
//! never lead a write, delete, chmod or chown outside the root, whatever the
//! command and whatever its exit status.
//!
//! Every test builds an `outside` directory next to `root/` (in the same
//! temp dir), snapshots it (the whole tree, plus inode numbers and
//! timestamps, so even a rewrite with identical bytes or a no-op chown is
//! seen), plants symlinks into it from the root, runs commands, and compares
//! the snapshot after each one.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use serde_json::json;
use sysgen_tests::{Run, TestEnv, dump_tree};

/// Content of the files outside the root. The motd one is also what the
/// configurations declare for /etc/motd in the verify test, so that a
/// verify that followed the planted link would find "no drift".
const OUTSIDE_MOTD: &str = "outside motd: must never change\n";
const OUTSIDE_CONF: &str = "outside app.conf: must never change\n";

/// How a planted link names the outside directory.
#[derive(Clone, Copy, Debug)]
enum Target {
    Absolute,
    Relative,
}

const TARGETS: [Target; 2] = [Target::Absolute, Target::Relative];

struct World {
    env: TestEnv,
    outside: PathBuf,
    snapshot: String,
}

impl World {
    /// A TestEnv plus `outside/` holding files, a subdirectory and files with
    /// unusual modes, next to `root/`.
    fn new() -> World {
        let env = TestEnv::new();
        let outside = env.dir.path().join("outside");
        fs::create_dir_all(outside.join("sub")).unwrap();
        fs::write(outside.join("motd"), OUTSIDE_MOTD).unwrap();
        fs::write(outside.join("app.conf"), OUTSIDE_CONF).unwrap();
        fs::write(outside.join("a.conf"), "outside a.conf\n").unwrap();
        fs::write(outside.join("c.conf"), "outside c.conf\n").unwrap();
        fs::write(outside.join("sub/deep"), "outside deep\n").unwrap();
        set_mode(&outside.join("app.conf"), 0o640);
        set_mode(&outside.join("sub"), 0o711);
        let snapshot = snapshot(&outside);
        World {
            env,
            outside,
            snapshot,
        }
    }

    /// What a link at in-root path `at` should hold to reach `outside/rest`.
    fn target(&self, at: &str, rest: &str, how: Target) -> PathBuf {
        let base = match how {
            Target::Absolute => self.outside.clone(),
            Target::Relative => {
                // From the link's directory up to the temp dir, then outside/.
                let depth = at.trim_start_matches('/').split('/').count() - 1;
                let mut p = PathBuf::new();
                for _ in 0..depth + 1 {
                    p.push("..");
                }
                p.join("outside")
            }
        };
        if rest.is_empty() {
            base
        } else {
            base.join(rest)
        }
    }

    /// Plants a symlink at in-root path `at` (replacing what is there) to
    /// `outside/rest`, and checks that it really resolves there.
    fn plant(&self, at: &str, rest: &str, how: Target) -> PathBuf {
        let path = self.env.at(at);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        match fs::symlink_metadata(&path) {
            Ok(md) if md.is_dir() => fs::remove_dir_all(&path).unwrap(),
            Ok(_) => fs::remove_file(&path).unwrap(),
            Err(_) => {}
        }
        let target = self.target(at, rest, how);
        symlink(&target, &path).unwrap();
        let want = if rest.is_empty() {
            self.outside.clone()
        } else {
            self.outside.join(rest)
        };
        assert_eq!(
            fs::canonicalize(&path).unwrap(),
            fs::canonicalize(&want).unwrap(),
            "the planted link {} -> {} must reach {}",
            path.display(),
            target.display(),
            want.display()
        );
        target
    }

    /// Fails unless `outside/` is exactly as it was created.
    #[track_caller]
    fn assert_outside_untouched(&self, after: &str, run: &Run) {
        let now = snapshot(&self.outside);
        assert_eq!(
            now, self.snapshot,
            "outside the root changed after {after}\nstdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        );
        assert!(
            !run.stderr.contains("panicked"),
            "{after} panicked:\n{}",
            run.stderr
        );
    }

    /// Runs a command, then checks outside is untouched; returns the run.
    #[track_caller]
    fn run(&self, args: &[&str]) -> Run {
        let r = self.env.run(args);
        self.assert_outside_untouched(&args.join(" "), &r);
        r
    }

    #[track_caller]
    fn run_fault(&self, k: u64, args: &[&str]) -> Run {
        let r = self.env.run_with_fault(k, args);
        self.assert_outside_untouched(&format!("SYSGEN_FAULT_AFTER_STEPS={k} {args:?}"), &r);
        r
    }

    fn config(&self, name: &str, v: serde_json::Value) -> String {
        self.env.config(name, v).to_str().unwrap().to_owned()
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// The whole tree (type, mode, owner, content hash, link target) plus, for
/// every entry and for the directory itself, inode and timestamps: a write
/// of the same bytes, a rename over, a chmod or chown to the same values all
/// change one of these.
fn snapshot(dir: &Path) -> String {
    let mut s = dump_tree(dir, &[]);
    s.push_str("\n--- metadata\n");
    let mut stack = vec![dir.to_path_buf()];
    let mut lines = Vec::new();
    while let Some(d) = stack.pop() {
        let md = fs::symlink_metadata(&d).unwrap();
        lines.push(meta_line(&d, &md));
        if md.is_dir() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let md = fs::symlink_metadata(&p).unwrap();
                if md.is_dir() {
                    stack.push(p);
                } else {
                    lines.push(meta_line(&p, &md));
                }
            }
        }
    }
    lines.sort();
    s.push_str(&lines.join("\n"));
    s
}

fn meta_line(p: &Path, md: &fs::Metadata) -> String {
    format!(
        "{} ino={} mode={:o} uid={} gid={} nlink={} size={} mtime={}.{} ctime={}.{}",
        p.display(),
        md.ino(),
        md.mode(),
        md.uid(),
        md.gid(),
        md.nlink(),
        md.size(),
        md.mtime(),
        md.mtime_nsec(),
        md.ctime(),
        md.ctime_nsec()
    )
}

fn is_symlink_to(p: &Path, target: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
        && fs::read_link(p).is_ok_and(|t| t == target)
}

/// root/etc/app -> outside; the configuration declares /etc/app/app.conf.
/// sysgen either replaces the link with a real directory (and restores the
/// link when the path leaves the configuration) or refuses with exit 1
/// naming the path; it never writes through the link.
#[test]
fn symlink_at_an_ancestor_of_a_declared_file() {
    for how in TARGETS {
        let w = World::new();
        let target = w.plant("/etc/app", "", how);
        let c1 = w.config(
            "c1.json",
            json!({ "files": { "/etc/app/app.conf": { "content": "managed app.conf\n" } } }),
        );
        let before = w.env.tree();
        let r = w.run(&["switch", &c1]);
        let link = w.env.at("/etc/app");
        match r.code {
            Some(0) => {
                let md = fs::symlink_metadata(&link).unwrap();
                assert!(
                    md.is_dir() && !md.file_type().is_symlink(),
                    "{how:?}: switch succeeded, so /etc/app must now be a real directory"
                );
                assert_eq!(
                    fs::read_to_string(w.env.at("/etc/app/app.conf")).unwrap(),
                    "managed app.conf\n"
                );
                // Leaving the configuration puts the link back, and only it.
                let c2 = w.config(
                    "c2.json",
                    json!({ "files": { "/etc/other": { "content": "x\n" } } }),
                );
                w.run(&["switch", &c2]).ok();
                assert!(
                    is_symlink_to(&link, &target),
                    "{how:?}: the planted symlink must be restored when /etc/app leaves the configuration\n{}",
                    w.env.tree()
                );
                // Rolling back and forth keeps it safe too.
                w.run(&["rollback"]).ok();
                assert!(fs::symlink_metadata(&link).unwrap().is_dir());
                w.run(&["rollback"]).ok();
                assert!(is_symlink_to(&link, &target), "{how:?}\n{}", w.env.tree());
                w.run(&["switch", &w.config("empty.json", json!({}))]).ok();
                assert!(is_symlink_to(&link, &target), "{how:?}\n{}", w.env.tree());
            }
            Some(1) => {
                assert!(
                    r.stderr.contains("/etc/app"),
                    "{how:?}: the refusal must name /etc/app:\n{}",
                    r.stderr
                );
                assert_eq!(
                    w.env.tree(),
                    before,
                    "{how:?}: a refused switch changes nothing"
                );
                assert!(is_symlink_to(&link, &target));
            }
            other => panic!(
                "{how:?}: expected exit 0 or 1, got {other:?}\nstdout:\n{}\nstderr:\n{}",
                r.stdout, r.stderr
            ),
        }
    }
}

/// A deeper variant: the link is two levels above the declared file, and
/// the file's directory exists outside (outside/sub), so a write through
/// the link would land in an existing directory.
#[test]
fn symlink_two_levels_above_a_declared_file() {
    for how in TARGETS {
        let w = World::new();
        let target = w.plant("/opt/x", "", how);
        let c1 = w.config(
            "c1.json",
            json!({
                "files": { "/opt/x/sub/deep": { "content": "managed deep\n", "mode": "0600" } },
                "directories": { "/opt/x/sub/new": {} }
            }),
        );
        let before = w.env.tree();
        let r = w.run(&["switch", &c1]);
        match r.code {
            Some(0) => {
                assert!(
                    !fs::symlink_metadata(w.env.at("/opt/x"))
                        .unwrap()
                        .file_type()
                        .is_symlink()
                );
                assert_eq!(
                    fs::read_to_string(w.env.at("/opt/x/sub/deep")).unwrap(),
                    "managed deep\n"
                );
                w.run(&["switch", &w.config("empty.json", json!({}))]).ok();
                assert!(
                    is_symlink_to(&w.env.at("/opt/x"), &target),
                    "{how:?}\n{}",
                    w.env.tree()
                );
            }
            Some(1) => {
                assert!(r.stderr.contains("/opt/x"), "{how:?}:\n{}", r.stderr);
                assert_eq!(w.env.tree(), before);
            }
            other => panic!("{how:?}: exit {other:?}\n{}", r.stderr),
        }
    }
}

/// root/etc/motd -> outside/motd; the configuration declares /etc/motd.
/// The switch replaces the link, not its target; leaving the configuration
/// puts the link back.
#[test]
fn symlink_at_the_declared_file_path() {
    for how in TARGETS {
        let w = World::new();
        let target = w.plant("/etc/motd", "motd", how);
        let c1 = w.config(
            "c1.json",
            json!({ "files": { "/etc/motd": { "content": "managed motd\n", "mode": "0600", "owner": "www-data" } } }),
        );
        w.run(&["switch", &c1]).ok();
        let motd = w.env.at("/etc/motd");
        let md = fs::symlink_metadata(&motd).unwrap();
        assert!(
            md.is_file(),
            "{how:?}: /etc/motd must be a regular file now"
        );
        assert_eq!(fs::read_to_string(&motd).unwrap(), "managed motd\n");
        assert_eq!(md.uid(), 33);
        w.run(&["verify"]).ok();
        // A change of the managed file, then leaving the configuration.
        let c2 = w.config(
            "c2.json",
            json!({ "files": { "/etc/motd": { "content": "managed motd 2\n", "mode": "0644" } } }),
        );
        w.run(&["switch", &c2]).ok();
        let c3 = w.config(
            "c3.json",
            json!({ "files": { "/etc/x": { "content": "x\n" } } }),
        );
        w.run(&["switch", &c3]).ok();
        assert!(
            is_symlink_to(&motd, &target),
            "{how:?}: the planted link must be restored\n{}",
            w.env.tree()
        );
        w.run(&["rollback"]).ok();
        assert!(fs::symlink_metadata(&motd).unwrap().is_file());
        w.run(&["rollback", "--to", "1"]).ok();
        assert_eq!(fs::read_to_string(&motd).unwrap(), "managed motd\n");
        w.run(&["rollback", "--to", "3"]).ok();
        assert!(is_symlink_to(&motd, &target), "{how:?}\n{}", w.env.tree());
    }
}

/// The same with a declared symlink and a declared directory at planted
/// links: the planted link is replaced, never followed.
#[test]
fn symlink_at_a_declared_symlink_or_directory_path() {
    for how in TARGETS {
        let w = World::new();
        let t_link = w.plant("/etc/link", "motd", how);
        let t_dir = w.plant("/srv/data", "", how);
        let c1 = w.config(
            "c1.json",
            json!({
                "symlinks": { "/etc/link": "/nowhere" },
                "directories": { "/srv/data": { "mode": "0700", "owner": "www-data" } },
                "files": { "/srv/data/app.conf": { "content": "in data\n" } }
            }),
        );
        let before = w.env.tree();
        let r = w.run(&["switch", &c1]);
        match r.code {
            Some(0) => {
                assert!(is_symlink_to(&w.env.at("/etc/link"), Path::new("/nowhere")));
                let md = fs::symlink_metadata(w.env.at("/srv/data")).unwrap();
                assert!(md.is_dir());
                assert_eq!(md.mode() & 0o7777, 0o700);
                assert_eq!(md.uid(), 33);
                w.run(&["switch", &w.config("empty.json", json!({}))]).ok();
                assert!(
                    is_symlink_to(&w.env.at("/etc/link"), &t_link),
                    "{how:?}\n{}",
                    w.env.tree()
                );
                assert!(
                    is_symlink_to(&w.env.at("/srv/data"), &t_dir),
                    "{how:?}\n{}",
                    w.env.tree()
                );
            }
            Some(1) => {
                assert!(r.stderr.contains("/srv/data"), "{}", r.stderr);
                assert_eq!(w.env.tree(), before);
            }
            other => panic!("{how:?}: exit {other:?}\n{}", r.stderr),
        }
    }
}

fn app_configs(w: &World) -> (String, String) {
    let a = w.config(
        "a.json",
        json!({
            "directories": { "/srv/app": { "mode": "0750", "owner": "www-data", "group": "www-data" } },
            "files": {
                "/srv/app/a.conf": { "content": "a one\n", "owner": "www-data" },
                "/srv/app/c.conf": { "content": "c one\n" },
                "/srv/app/sub/deep": { "content": "deep one\n", "mode": "0600" }
            },
            "symlinks": { "/srv/app/l": "/etc/passwd" }
        }),
    );
    let b = w.config(
        "b.json",
        json!({
            "directories": { "/srv/app": { "mode": "0755", "owner": "root" } },
            "files": {
                "/srv/app/a.conf": { "content": "a two\n", "mode": "0600" },
                "/srv/app/b.conf": { "content": "b two\n" },
                "/srv/app/sub/deep": { "content": "deep two\n", "mode": "0644" },
                "/srv/app/motd": { "content": "motd two\n" }
            }
        }),
    );
    (a, b)
}

/// After a switch, the managed directory /srv/app is replaced with a link to
/// outside; then switches that write, change and remove files under it,
/// with and without --force, rollback, verify, status, gc: nothing outside
/// changes, whatever the exit codes.
#[test]
fn symlink_planted_at_a_managed_directory_after_a_switch() {
    for how in TARGETS {
        let w = World::new();
        let (a, b) = app_configs(&w);
        w.run(&["switch", &a]).ok();
        let target = w.plant("/srv/app", "", how);
        let r = w.run(&["switch", &b]);
        assert_ne!(
            r.code,
            Some(0),
            "{how:?}: a switch over a planted link at a managed directory is drift\n{}",
            r.stdout
        );
        assert!(r.stderr.contains("/srv/app"), "{}", r.stderr);
        w.run(&["switch", "--dry-run", &b]);
        w.run(&["switch", "--force", &b]);
        w.run(&["verify"]);
        w.run(&["verify", "--store"]);
        w.run(&["status"]);
        w.run(&["diff"]);
        w.run(&["rollback"]);
        w.run(&["rollback", "--force"]);
        w.run(&["rollback", "--to", "1", "--force"]);
        w.run(&["switch", "--force", &a]);
        w.run(&["switch", "--force", &w.config("empty.json", json!({}))]);
        w.run(&["recover"]);
        w.run(&["recover", "--rollback"]);
        w.run(&["gc", "--keep", "1"]);
        w.run(&["gc"]);
        // The planted link itself is still the admin's (or sysgen replaced
        // it by a directory and then removed that); it never became a file
        // written through.
        if let Ok(md) = fs::symlink_metadata(w.env.at("/srv/app"))
            && md.file_type().is_symlink()
        {
            assert_eq!(fs::read_link(w.env.at("/srv/app")).unwrap(), target);
        }
    }
}

/// A switch is interrupted (fault injection) while /srv/app is a managed
/// directory; the admin then replaces it with a link to outside; recover and
/// recover --rollback must not follow it.
#[test]
fn recover_with_a_symlink_planted_after_an_interrupted_switch() {
    for how in TARGETS {
        for rollback in [false, true] {
            for k in [1u64, 3] {
                let w = World::new();
                let (a, b) = app_configs(&w);
                w.run(&["switch", &a]).ok();
                let r = w.run_fault(k, &["switch", &b]);
                assert!(
                    r.killed,
                    "{how:?} k={k}: the fault must abort the switch: {r:?}"
                );
                w.plant("/srv/app", "", how);
                let args: &[&str] = if rollback {
                    &["recover", "--rollback"]
                } else {
                    &["recover"]
                };
                w.run(args);
                w.run(&["status"]);
                w.run(&["verify"]);
                w.run(&["rollback"]);
                w.run(&["gc"]);
            }
        }
    }
}

/// A link planted at a file's parent during an interrupted switch, where
/// the parent is not itself a managed entry of the old generation: /etc/app
/// is created by sysgen as a needed parent.
#[test]
fn recover_with_a_symlink_at_a_parent_sysgen_created() {
    for how in TARGETS {
        let w = World::new();
        let a = w.config(
            "a.json",
            json!({ "files": { "/etc/app/app.conf": { "content": "one\n" }, "/etc/app/x": { "content": "x\n" } } }),
        );
        let b = w.config(
            "b.json",
            json!({ "files": { "/etc/app/app.conf": { "content": "two\n" }, "/etc/app/y": { "content": "y\n" } } }),
        );
        w.run(&["switch", &a]).ok();
        let r = w.run_fault(1, &["switch", &b]);
        assert!(r.killed, "{r:?}");
        w.plant("/etc/app", "", how);
        w.run(&["recover"]);
        w.run(&["recover", "--rollback"]);
        w.run(&["switch", "--force", &a]);
        w.run(&["switch", "--force", &w.config("empty.json", json!({}))]);
        w.run(&["gc"]);
    }
}

/// A tree source holding symlinks that point outside: they are recorded as
/// symlinks with their targets as written, never followed (outside's
/// content is not copied in).
#[test]
fn tree_source_symlinks_are_recorded_not_followed() {
    let w = World::new();
    let site = w.env.cfg().join("site");
    fs::create_dir_all(site.join("inner")).unwrap();
    fs::write(site.join("index.html"), "<h1>site</h1>\n").unwrap();
    symlink(&w.outside, site.join("abs-dir")).unwrap();
    symlink(w.outside.join("motd"), site.join("abs-file")).unwrap();
    // cfg/site/rel-dir -> ../../outside resolves to the temp dir's outside/.
    symlink("../../outside", site.join("rel-dir")).unwrap();
    symlink("../../../outside/app.conf", site.join("inner/rel-file")).unwrap();
    symlink("/nonexistent/dangling", site.join("dangling")).unwrap();
    assert!(site.join("rel-dir/motd").exists() && site.join("inner/rel-file").exists());
    let c = w.config(
        "c.json",
        json!({ "trees": { "/srv/www": { "source": "site" } } }),
    );
    w.run(&["switch", &c]).ok();
    let tree = w.env.tree();
    for (p, t) in [
        ("/srv/www/abs-dir", w.outside.display().to_string()),
        (
            "/srv/www/abs-file",
            w.outside.join("motd").display().to_string(),
        ),
        ("/srv/www/rel-dir", "../../outside".to_owned()),
        (
            "/srv/www/inner/rel-file",
            "../../../outside/app.conf".to_owned(),
        ),
        ("/srv/www/dangling", "/nonexistent/dangling".to_owned()),
    ] {
        assert!(
            tree.contains(&format!("{p} symlink 0:0 -> {t}\n"))
                || tree.ends_with(&format!("{p} symlink 0:0 -> {t}")),
            "{p} must be a symlink to {t}:\n{tree}"
        );
    }
    // Nothing of outside was copied in: no entry below the links, and no
    // file on the root or in the store holds outside's content.
    assert!(!tree.contains("/srv/www/abs-dir/"), "{tree}");
    assert!(!tree.contains("/srv/www/rel-dir/"), "{tree}");
    assert!(!sysgen_tests::any_file_contains(
        &w.env.root(),
        OUTSIDE_MOTD.as_bytes()
    ));
    assert!(!sysgen_tests::any_file_contains(
        &w.env.root(),
        OUTSIDE_CONF.as_bytes()
    ));
    // The build records exactly the declared entries (the dir, 2 files/dirs
    // and 5 links): diff against an empty configuration lists them.
    let empty = w.config("empty.json", json!({}));
    let d = w.run(&["--json", "diff", &empty]).ok().json();
    let changes = d["changes"].as_array().unwrap();
    let paths: Vec<&str> = changes
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    for p in &paths {
        assert!(
            !p.starts_with("/srv/www/abs-dir/") && !p.starts_with("/srv/www/rel-dir/"),
            "a path below a source symlink was declared: {paths:?}"
        );
    }
    w.run(&["verify"]).ok();
    w.run(&["switch", &empty]).ok();
    assert!(!w.env.at("/srv/www").exists());
}

/// verify (and status) with planted links do not follow them: outside holds
/// exactly what the generation declares, so a verify that followed the links
/// would wrongly report no drift.
#[test]
fn verify_does_not_follow_planted_symlinks() {
    for how in TARGETS {
        let w = World::new();
        let c = w.config(
            "c.json",
            json!({
                "files": {
                    "/etc/motd": { "content": OUTSIDE_MOTD },
                    "/etc/app/app.conf": { "content": OUTSIDE_CONF, "mode": "0640" }
                }
            }),
        );
        w.run(&["switch", &c]).ok();
        w.run(&["verify"]).ok();
        w.plant("/etc/motd", "motd", how);
        let r = w.run(&["verify"]).expect(1);
        assert!(r.stdout.contains("/etc/motd"), "{}", r.stdout);
        let r = w.run(&["--json", "verify", "--store"]).expect(1);
        assert_eq!(r.json()["ok"], false);
        w.plant("/etc/app", "", how);
        let r = w.run(&["verify", "-v"]).expect(1);
        assert!(r.stdout.contains("/etc/motd"), "{}", r.stdout);
        assert!(r.stdout.contains("/etc/app"), "{}", r.stdout);
        let r = w.run(&["status"]).ok();
        assert!(r.stdout.contains("drift"), "{}", r.stdout);
        // Switching to the active content again changes nothing (SPEC §3),
        // and a switch to new content over the links is drift or repairs
        // the root; neither writes through them (checked by `run`).
        w.run(&["switch", &c]);
        let c2 = w.config(
            "c2.json",
            json!({ "files": { "/etc/motd": { "content": "new\n" }, "/etc/app/app.conf": { "content": "new\n" } } }),
        );
        let r = w.run(&["switch", &c2]);
        if r.code == Some(0) {
            assert!(
                fs::symlink_metadata(w.env.at("/etc/motd"))
                    .unwrap()
                    .is_file()
            );
        } else {
            assert_eq!(r.code, Some(1), "{}", r.stderr);
            assert!(
                r.stderr.contains("/etc/motd") || r.stderr.contains("/etc/app"),
                "{}",
                r.stderr
            );
        }
        w.run(&["switch", "--force", &c2]);
        w.run(&["verify"]);
    }
}

/// The default state directory lies under the root: a link planted at
/// /var (or /var/lib) pointing outside must not make sysgen create its
/// state (database, store, lock) outside the root.
#[test]
fn state_dir_is_not_created_through_a_planted_link() {
    for how in TARGETS {
        for at in ["/var", "/var/lib"] {
            let w = World::new();
            w.plant(at, "", how);
            let c = w.config(
                "c.json",
                json!({ "files": { "/etc/motd": { "content": "m\n" } } }),
            );
            w.run(&["switch", &c]);
            w.run(&["status"]);
            w.run(&["list"]);
        }
    }
}
