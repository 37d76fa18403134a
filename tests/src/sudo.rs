//! A scratch Debian root with sudo installed, for the tests that run the
//! root's real `visudo` (`files.<path>.validate`): the cached root of
//! [`crate::packages::debian_root`], with sudo added once and cached
//! beside it, and copied per test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{TestEnv, cannot_run};

/// Bump when the way the sudo root is made changes.
const SUDO_ROOT: &str = "debian-bookworm-apt-v1+sudo-v1";

/// The cached Debian root with sudo installed, made on first use (apt
/// inside a copy of the cached root, from Debian's mirror); `None` when it
/// cannot be made here (the reason is given to `cannot_run`).
pub fn sudo_root(test: &str) -> Option<PathBuf> {
    let cache = crate::packages::cache_dir();
    let root = cache.join(SUDO_ROOT);
    if root.join("usr/sbin/visudo").exists() {
        return Some(root);
    }
    let base = crate::packages::debian_root();
    let lock = fs::File::create(cache.join(format!("{SUDO_ROOT}.lock"))).expect("lock file");
    let _flock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("lock the test cache: {e}"));
    if root.join("usr/sbin/visudo").exists() {
        return Some(root);
    }
    let tmp = cache.join(format!("{SUDO_ROOT}.tmp"));
    let _ = fs::remove_dir_all(&tmp);
    let ok = |c: &mut Command| c.status().is_ok_and(|st| st.success());
    assert!(
        ok(Command::new("cp").arg("-a").arg(&base).arg(&tmp)),
        "copy the Debian root"
    );
    let _ = fs::copy("/etc/resolv.conf", tmp.join("etc/resolv.conf"));
    let installed = ok(Command::new("chroot").arg(&tmp).args([
        "sh",
        "-c",
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo && apt-get clean && rm -rf /var/lib/apt/lists/*",
    ]));
    if !installed {
        let _ = fs::remove_dir_all(&tmp);
        cannot_run(
            test,
            "sudo could not be installed in the scratch Debian root (no network to Debian's mirror?)",
        );
        return None;
    }
    fs::rename(&tmp, &root).expect("move the sudo root into the cache");
    Some(root)
}

/// A fresh copy of the sudo root, with `cfg/` beside it.
pub fn sudo_env(test: &str) -> Option<TestEnv> {
    sudo_root(test).map(|src| copy_of(&src))
}

/// A fresh world whose root is a copy (`cp -a`: modes, owners, times) of
/// `src`, with an empty `cfg/` beside it.
pub fn copy_of(src: &Path) -> TestEnv {
    let env = TestEnv {
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let copied = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(env.root())
        .status()
        .expect("run cp");
    assert!(
        copied.success(),
        "copy {} to the scratch root",
        src.display()
    );
    fs::create_dir_all(env.cfg()).expect("mkdir cfg");
    env
}
