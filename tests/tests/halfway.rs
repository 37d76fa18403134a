//! A switch that fails halfway (issue 11, item 8), on real roots: the error
//! says the root is between two generations, which step failed and what
//! each `recover` does; both ways out land exactly on a generation; a plan
//! that cannot fit is refused before its journal; and undoing after a full
//! disk needs no free space for what never changed.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sysgen_tests::{Run, TestEnv, cannot_run, dump_tree, file_line, s};

/// Takes the immutable flag off again on drop, so that a failed assertion
/// still lets the temporary directory go.
struct Immutable(PathBuf);

impl Immutable {
    /// `None` when the filesystem has no immutable flag.
    fn set(p: &Path) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(p)
            .status()
            .is_ok_and(|st| st.success());
        ok.then(|| Immutable(p.to_owned()))
    }

    fn clear(&self) {
        let st = Command::new("chattr").arg("-i").arg(&self.0).status();
        assert!(st.is_ok_and(|st| st.success()), "chattr -i");
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// A tmpfs of `size` mounted over the test's root (with a fresh `/etc`),
/// unmounted on drop.
struct SmallRoot(PathBuf);

impl SmallRoot {
    fn mount(env: &TestEnv, size: &str) -> SmallRoot {
        let root = env.root();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&root)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs (the tests run as root)");
        let mounted = SmallRoot(root);
        env.write_root("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
        env.write_root("/etc/group", "root:x:0:\n");
        mounted
    }
}

impl Drop for SmallRoot {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `n` bytes that differ with `seed`.
fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn two_files(env: &TestEnv, name: &str, a: &[u8], b: &[u8]) -> PathBuf {
    let src_a = env.write_cfg(&format!("{name}.a"), "");
    fs::write(&src_a, a).unwrap();
    let src_b = env.write_cfg(&format!("{name}.b"), "");
    fs::write(&src_b, b).unwrap();
    env.config(
        &format!("{name}.json"),
        json!({ "files": {
            "/etc/a": { "source": s(&src_a) },
            "/etc/b": { "source": s(&src_b) },
        } }),
    )
}

/// The halfway message: both generations, the step, both ways out.
#[track_caller]
fn says_halfway(r: &Run, what: &str, step: &str, cause: &str) {
    assert_eq!(r.code, Some(1), "{r:?}");
    let e = &r.stderr;
    for want in [
        format!("error: {what} failed at {step}"),
        cause.to_owned(),
        "the root is now between generation 1 and generation 2".to_owned(),
        "`sysgen recover` runs the switch again from its first step and finishes it on generation 2"
            .to_owned(),
        "`sysgen recover --rollback` undoes it and puts the root back on generation 1".to_owned(),
    ] {
        assert!(e.contains(&want), "missing {want:?} in:\n{e}");
    }
}

#[test]
fn a_switch_that_fails_at_its_second_file_says_where_the_root_is() {
    let env = TestEnv::new();
    let one = two_files(&env, "one", b"a1\n", b"b1\n");
    let two = two_files(&env, "two", b"a2\n", b"b2\n");
    env.switch(&one);
    let before = env.tree();
    let after: String = before
        .lines()
        .map(|l| match l.split(' ').next() {
            Some("/etc/a") => file_line("/etc/a", 0o644, "0:0", b"a2\n"),
            Some("/etc/b") => file_line("/etc/b", 0o644, "0:0", b"b2\n"),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(before, after);

    // Rolled back: the immutable file never changed, and is not rewritten.
    let Some(lock) = Immutable::set(&env.at("/etc/b")) else {
        return cannot_run("halfway (EPERM)", "chattr +i fails on the test filesystem");
    };
    let r = env.run(&["switch", s(&two)]);
    says_halfway(
        &r,
        "switch",
        "step 2 of 3: replace file /etc/b",
        "Operation not permitted",
    );
    assert!(env.state().join("journal.json").exists());
    env.run(&["recover", "--rollback"]).ok();
    assert_eq!(env.tree(), before);
    assert!(!env.state().join("journal.json").exists());

    // Finished forward once the cause is gone.
    let r = env.run(&["switch", s(&two)]);
    says_halfway(&r, "switch", "step 2 of 3", "Operation not permitted");
    // A recover that meets the same cause says so too.
    let r = env.run(&["recover"]);
    says_halfway(&r, "recover", "step 2 of 3", "Operation not permitted");
    lock.clear();
    env.run(&["recover"]).ok();
    assert_eq!(env.tree(), after);
    assert!(!env.state().join("journal.json").exists());
}

#[test]
fn a_plan_larger_than_the_free_space_is_refused_before_its_journal() {
    let env = TestEnv::new();
    let _root = SmallRoot::mount(&env, "8m");
    let state = env.dir.path().join("state");
    let big = env.write_cfg("big", "");
    fs::write(&big, vec![0u8; 10 << 20]).unwrap();
    let cfg = env.config(
        "c.json",
        json!({ "files": { "/etc/big": { "source": s(&big) } } }),
    );
    let before = env.tree();
    for dry in [true, false] {
        let mut args = vec!["--state-dir", s(&state), "switch", s(&cfg)];
        if dry {
            args.push("--dry-run");
        }
        let r = env.run(&args);
        assert_eq!(r.code, Some(1), "{r:?}");
        let want = format!(
            "error: not enough space on {}: the plan writes 10.0 MiB, ",
            env.root().display()
        );
        assert!(r.stderr.contains(&want), "{}", r.stderr);
        assert!(
            r.stderr.trim_end().ends_with("nothing was changed"),
            "{}",
            r.stderr
        );
        assert!(!state.join("journal.json").exists());
        assert_eq!(env.tree(), before);
    }
}

#[test]
fn undoing_after_a_full_disk_needs_no_space_for_what_never_changed() {
    let env = TestEnv::new();
    let _root = SmallRoot::mount(&env, "16m");
    let state = env.dir.path().join("state");
    let st = s(&state);
    // /etc/b grows from 300 KiB to 1 MiB; /etc/a (written first) is small.
    let one = two_files(&env, "one", b"a1\n", &bytes(300 << 10, 1));
    let two = two_files(&env, "two", b"a2\n", &bytes(1 << 20, 2));
    env.run(&["--state-dir", st, "switch", s(&one)]).ok();
    let filler = env.at("/filler");
    let tree = || dump_tree(&env.root(), std::slice::from_ref(&filler));
    let before = tree();

    // The switch stops after /etc/a, then the disk fills up but for
    // 128 KiB: less than either version of /etc/b.
    let r = env.run_with_fault(1, &["--state-dir", st, "switch", s(&two)]);
    assert!(r.killed, "{r:?}");
    let mut f = fs::File::create(&filler).unwrap();
    let chunk = vec![7u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(128 << 10)).unwrap();
    drop(f);

    let r = env.run(&["--state-dir", st, "recover"]);
    says_halfway(
        &r,
        "recover",
        "step 2 of 3: replace file /etc/b",
        "No space left on device",
    );
    // /etc/b never changed: the undo leaves it, and fits.
    env.run(&["--state-dir", st, "recover", "--rollback"]).ok();
    assert_eq!(tree(), before);
    assert!(!state.join("journal.json").exists());
}
