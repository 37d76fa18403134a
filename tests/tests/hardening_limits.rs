//! Issue 11, items 3, 4, 10 and 11: limits found at validation (exit 2,
//! nothing changed) rather than halfway through a switch; no path, however
//! produced, in or over the state directory; a file with other links is
//! never changed in place; includes that cannot crash or hang the binary.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use sysgen_tests::{Run, TestEnv, dump_tree, s};

/// The root (state included, less the lock, which holds the last pid), the
/// configs and anything next to them.
fn world(env: &TestEnv) -> String {
    dump_tree(env.dir.path(), &[env.state().join("lock")])
}

/// A root with an active generation, so "nothing changed" means something.
fn setup() -> TestEnv {
    let env = TestEnv::new();
    let cfg = env.config(
        "base.json",
        json!({ "files": { "/etc/a": { "content": "a\n" } } }),
    );
    env.switch(&cfg);
    env
}

/// `switch` and `build` of `cfg` both exit 2 naming `want`, and change nothing.
#[track_caller]
fn refused(env: &TestEnv, cfg: &std::path::Path, want: &str) {
    let before = world(env);
    for cmd in ["switch", "build"] {
        let r = env.run(&[cmd, s(cfg)]);
        assert_eq!(r.code, Some(2), "{cmd}: {r:?}");
        assert!(
            r.stderr.contains(want),
            "{cmd}: want {want:?} in {}",
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert_eq!(world(env), before, "{cmd} changed something");
    }
}

#[test]
fn names_paths_and_targets_over_the_kernel_limits_are_refused_at_validation() {
    let env = setup();
    let long_name = format!("/etc/{}", "n".repeat(256));
    let cfg = env.config(
        "c1.json",
        json!({ "files": { long_name: { "content": "x" } } }),
    );
    refused(&env, &cfg, "at most 255");

    let deep = format!("/{}", vec!["d".repeat(200); 21].join("/"));
    assert!(deep.len() > 4095);
    let cfg = env.config("c2.json", json!({ "directories": { deep: {} } }));
    refused(&env, &cfg, "at most 4095");

    let target = format!("/{}", "t".repeat(4096));
    let cfg = env.config("c3.json", json!({ "symlinks": { "/etc/l": target } }));
    refused(&env, &cfg, "at most 4095");

    for id in [json!(4294967295u64), json!("4294967295")] {
        let cfg = env.config(
            "c4.json",
            json!({ "files": { "/etc/o": { "content": "x", "owner": id.clone() } } }),
        );
        refused(&env, &cfg, "4294967295");
        let cfg = env.config(
            "c5.json",
            json!({ "directories": { "/srv/o": { "group": id } } }),
        );
        refused(&env, &cfg, "4294967295");
    }
}

#[test]
fn a_name_of_240_and_255_bytes_switches_and_rolls_back() {
    let env = setup();
    for n in [240, 255] {
        let p = format!("/etc/{}", "m".repeat(n));
        let cfg = env.config(
            "long.json",
            json!({ "files": { p.clone(): { "content": "long\n", "mode": "0640" } } }),
        );
        env.switch(&cfg);
        assert_eq!(fs::read_to_string(env.at(&p)).unwrap(), "long\n");
        // A change of content and of mode alone, each through a temp name.
        let cfg = env.config(
            "long.json",
            json!({ "files": { p.clone(): { "content": "longer\n", "mode": "0600" } } }),
        );
        env.switch(&cfg);
        env.run(&["rollback"]).ok();
        assert_eq!(fs::read_to_string(env.at(&p)).unwrap(), "long\n");
    }
}

#[test]
fn a_tree_cannot_expand_into_or_over_the_state_directory() {
    let env = setup();
    // The tree at /var/lib whose source holds sysgen/sysgen.db.
    env.write_cfg("varlib/sysgen/sysgen.db", "not a database\n");
    env.write_cfg("varlib/other/x", "x\n");
    let cfg = env.config(
        "tree.json",
        json!({ "trees": { "/var/lib": { "source": "varlib" } } }),
    );
    refused(&env, &cfg, "/var/lib/sysgen");

    // A file where the state directory is, from a tree one level up.
    fs::remove_dir_all(env.cfg().join("varlib/sysgen")).unwrap();
    env.write_cfg("varlib/sysgen", "a file\n");
    refused(&env, &cfg, "/var/lib/sysgen");

    // A symlink above it: a tree at /var whose source has `lib` as a symlink.
    env.write_cfg("var/cache/x", "x\n");
    std::os::unix::fs::symlink("/elsewhere", env.cfg().join("var/lib")).unwrap();
    let cfg = env.config(
        "var.json",
        json!({ "trees": { "/var": { "source": "var" } } }),
    );
    refused(&env, &cfg, "/var/lib:");

    // Siblings that only share the name's start are fine.
    fs::remove_file(env.cfg().join("varlib/sysgen")).unwrap();
    env.write_cfg("varlib/sysgen-old/x", "x\n");
    let cfg = env.config(
        "tree.json",
        json!({ "trees": { "/var/lib": { "source": "varlib" } } }),
    );
    env.switch(&cfg);
    assert!(env.state().join("sysgen.db").is_file());
    env.run(&["list"]).ok();
}

#[test]
fn a_file_with_other_links_is_never_changed_in_place() {
    let env = TestEnv::new();
    let with = |mode: &str, owner: u32| {
        env.config(
            "c.json",
            json!({ "files": { "/etc/linked": { "content": "shared\n", "mode": mode, "owner": owner } } }),
        )
    };
    env.switch(&with("0644", 0));
    // A hard link from outside the root, as a dedup tool would make.
    let outside = env.dir.path().join("outside-link");
    fs::hard_link(env.at("/etc/linked"), &outside).unwrap();
    let before = fs::metadata(&outside).unwrap();

    // A mode-only change, then an owner-only change.
    env.switch(&with("0600", 0));
    env.switch(&with("0600", 33));
    let after = fs::metadata(&outside).unwrap();
    assert_eq!(
        after.mode(),
        before.mode(),
        "the outside file's mode changed"
    );
    assert_eq!(
        after.uid(),
        before.uid(),
        "the outside file's owner changed"
    );
    assert_eq!(fs::read_to_string(&outside).unwrap(), "shared\n");
    let managed = fs::metadata(env.at("/etc/linked")).unwrap();
    assert_eq!(managed.mode() & 0o7777, 0o600);
    assert_eq!(managed.uid(), 33);
    assert_eq!(
        managed.nlink(),
        1,
        "the managed file has an inode of its own"
    );
    assert_eq!(
        fs::read_to_string(env.at("/etc/linked")).unwrap(),
        "shared\n"
    );
    env.run(&["verify"]).ok();
}

/// Runs with a deadline: a hang is a failure, not a stuck test.
fn run_within(env: &TestEnv, args: &[&str], limit: Duration) -> Run {
    let mut child = env
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("sysgen {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        killed: out.status.code().is_none(),
    }
}

#[test]
fn a_long_include_chain_is_refused_not_a_crash() {
    let env = setup();
    let n = 10_000;
    for i in 0..n {
        let inc: Vec<String> = if i + 1 < n {
            vec![format!("i{}.json", i + 1)]
        } else {
            vec![]
        };
        env.config(&format!("i{i}.json"), json!({ "include": inc }));
    }
    // The root alone: the 10,000 configuration files are not at stake.
    let root = || dump_tree(&env.root(), &[env.state().join("lock")]);
    let before = root();
    let r = run_within(
        &env,
        &["switch", s(&env.cfg().join("i0.json"))],
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("nest more than 64"), "{}", r.stderr);
    assert_eq!(root(), before);

    // 64 levels are fine.
    let r = env.run(&["build", s(&env.cfg().join(format!("i{}.json", n - 64)))]);
    assert_eq!(r.code, Some(0), "{r:?}");
}

#[test]
fn an_include_that_is_not_a_regular_file_is_refused_without_blocking() {
    let env = setup();
    nix::unistd::mkfifo(
        &env.cfg().join("fifo.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let cfg = env.config("c.json", json!({ "include": ["fifo.json"] }));
    let r = run_within(&env, &["switch", s(&cfg)], Duration::from_secs(20));
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(
        r.stderr.contains("fifo.json") && r.stderr.contains("not a regular file"),
        "{}",
        r.stderr
    );
    // The top-level file too.
    let r = run_within(
        &env,
        &["switch", s(&env.cfg().join("fifo.json"))],
        Duration::from_secs(20),
    );
    assert_eq!(r.code, Some(2), "{r:?}");
    // And a directory named like a configuration.
    fs::create_dir(env.cfg().join("dir.json")).unwrap();
    let cfg = env.config("d.json", json!({ "include": ["dir.json"] }));
    let r = env.run(&["switch", s(&cfg)]);
    assert_eq!(r.code, Some(2), "{r:?}");
}

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_during_build_is_reported_as_what_it_is() {
    let env = TestEnv::new();
    let small = env.dir.path().join("small");
    fs::create_dir(&small).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs (the tests run as root)");
    let _mounted = Mounted(small.clone());
    // 4 MiB that zstd cannot shrink: streamed (over the small-file limit)
    // into a temp file that cannot fit.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..4 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let src = env.cfg().join("big");
    fs::write(&src, &bytes).unwrap();
    let cfg = env.config(
        "c.json",
        json!({ "files": { "/etc/big": { "source": s(&src) } } }),
    );
    let state = small.join("state");
    let r = env.run(&["--state-dir", s(&state), "build", s(&cfg)]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("No space left on device"), "{}", r.stderr);
    assert!(!r.stderr.contains("changed while"), "{}", r.stderr);
    // The failed put leaves no temp file behind.
    let tmp = state.join("store/tmp");
    assert_eq!(
        fs::read_dir(&tmp).unwrap().count(),
        0,
        "{}",
        dump_tree(&tmp, &[])
    );
}
