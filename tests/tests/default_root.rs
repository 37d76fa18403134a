//! sysgen on its default root, `/`, as it runs on a real host: no `--root`,
//! the state directory at `/var/lib/sysgen`. Each command runs in its own
//! mount namespace chrooted into a scratch root (the host's `/usr`
//! bind-mounted read-only for the binary's libraries, the binary copied
//! in), so the host itself is never the target: if the namespace or the
//! chroot cannot be made, the command never starts.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sysgen_tests::{Run, TestEnv, dump_tree, file_line, tree_with};

/// Mounts what the binary needs, then runs it chrooted, without `--root`.
/// `set -e` and `exec`: any failure before the chroot ends the command.
const IN_NAMESPACE: &str = r#"
set -e
R="$1"; shift
mount --bind /usr "$R/usr"
mount -o remount,bind,ro "$R/usr"
exec chroot "$R" /sysgen-test/sysgen "$@"
"#;

/// Paths the test declares. Unusual names, so that a host that had them
/// before the test would be noticed rather than changed.
const CONF: &str = "/etc/sysgen-default-root-test/app.conf";
const LINK: &str = "/etc/sysgen-default-root-test/current";
const NEW: &str = "/etc/sysgen-default-root-test/new.conf";
const DIR: &str = "/srv/sysgen-default-root-test";

struct Scratch {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        for d in ["usr", "etc", "cfg", "sysgen-test"] {
            fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        for l in ["bin", "sbin", "lib", "lib64"] {
            std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l)).expect("symlink");
        }
        fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n",
        )
        .expect("passwd");
        fs::write(root.join("etc/group"), "root:x:0:\nwww-data:x:33:\n").expect("group");
        fs::copy(TestEnv::sysgen_bin(), root.join("sysgen-test/sysgen")).expect("copy sysgen");
        Scratch { _dir: dir, root }
    }

    /// Runs sysgen with `args` (no `--root`) on the scratch root as `/`.
    fn sysgen(&self, args: &[&str]) -> Run {
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(IN_NAMESPACE)
            .arg("sh")
            .arg(&self.root)
            .args(args)
            .env_remove("SYSGEN_FAULT_AFTER_STEPS")
            .output()
            .expect("run unshare (util-linux)");
        Run::from(out)
    }

    /// Writes `/cfg/<name>` of the scratch root; returns its path there.
    fn config(&self, name: &str, v: serde_json::Value) -> String {
        fs::write(
            self.root.join("cfg").join(name),
            serde_json::to_string_pretty(&v).expect("json"),
        )
        .expect("write config");
        format!("/cfg/{name}")
    }

    /// The scratch root, less the mount point, the binary, the configurations
    /// and sysgen's state.
    fn tree(&self) -> String {
        let skip: Vec<PathBuf> = ["usr", "sysgen-test", "cfg", "var/lib/sysgen"]
            .iter()
            .map(|d| self.root.join(d))
            .collect();
        dump_tree(&self.root, &skip)
    }
}

/// What the host has at the paths the test touches: unchanged by the test.
fn host_state() -> Vec<(String, Option<fs::Metadata>)> {
    [
        CONF,
        LINK,
        NEW,
        DIR,
        "/var/lib/sysgen",
        "/cfg",
        "/sysgen-test",
    ]
    .iter()
    .map(|p| (p.to_string(), fs::symlink_metadata(Path::new(p)).ok()))
    .collect()
}

/// Each path's inode, size, mtime and ctime (absent: `None`).
type Summary = Vec<(String, Option<(u64, u64, i64, i64, i64, i64)>)>;

fn summary(state: &[(String, Option<fs::Metadata>)]) -> Summary {
    use std::os::unix::fs::MetadataExt;
    state
        .iter()
        .map(|(p, m)| {
            let stamp = m.as_ref().map(|m| {
                (
                    m.ino(),
                    m.size(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                )
            });
            (p.clone(), stamp)
        })
        .collect()
}

#[test]
fn switch_verify_rollback_on_the_default_root() {
    let host_before = summary(&host_state());
    for p in [CONF, LINK, NEW, DIR] {
        assert!(
            !Path::new(p).exists(),
            "{p} exists on this host; the test will not run next to it"
        );
    }
    let s = Scratch::new();
    let before = tree_with(
        &s.tree(),
        &[
            "/etc/sysgen-default-root-test dir 0755 0:0",
            "/srv dir 0755 0:0",
            "/var dir 0755 0:0",
            "/var/lib dir 0755 0:0",
        ],
    );
    let c1 = s.config(
        "c1.json",
        json!({
            "files": { CONF: { "content": "one\n", "mode": "0640", "group": "www-data" } },
            "symlinks": { LINK: "app.conf" },
            "directories": { DIR: { "mode": "0750", "owner": "www-data" } }
        }),
    );
    let c2 = s.config(
        "c2.json",
        json!({
            "files": {
                CONF: { "content": "two\n", "mode": "0640", "group": "www-data" },
                NEW: { "content": "new\n" }
            },
            "directories": { DIR: { "mode": "0750", "owner": "www-data" } }
        }),
    );
    let dir_line = format!("{DIR} dir 0750 33:0");
    let gen1 = tree_with(
        &before,
        &[
            &file_line(CONF, 0o640, "0:33", b"one\n"),
            &format!("{LINK} symlink 0:0 -> app.conf"),
            &dir_line,
        ],
    );
    let gen2 = tree_with(
        &before,
        &[
            &file_line(CONF, 0o640, "0:33", b"two\n"),
            &file_line(NEW, 0o644, "0:0", b"new\n"),
            &dir_line,
        ],
    );

    s.sysgen(&["switch", &c1]).ok();
    assert_eq!(s.tree(), gen1, "after switching to c1");
    assert!(
        s.root.join("var/lib/sysgen/sysgen.db").is_file(),
        "the state is in the default place"
    );
    s.sysgen(&["verify"]).ok();

    s.sysgen(&["switch", &c2]).ok();
    assert_eq!(s.tree(), gen2, "after switching to c2");
    s.sysgen(&["verify"]).ok();

    s.sysgen(&["rollback"]).ok();
    assert_eq!(s.tree(), gen1, "after the rollback");
    s.sysgen(&["verify"]).ok();
    let status = s.sysgen(&["--json", "status"]).ok().json();
    assert_eq!(status["active"]["number"], 1, "{status}");

    assert_eq!(summary(&host_state()), host_before, "the host is untouched");
}
