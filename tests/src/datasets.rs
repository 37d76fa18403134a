//! Test support for datasets: a real btrfs filesystem on a loop device, a
//! tmpfs, both mounted inside a test root and always taken down again (on
//! drop, so also when a test fails), and the zfs stand-in.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TestEnv;

fn sh(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

#[track_caller]
fn must(cmd: &str, args: &[&str]) -> String {
    let o = sh(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Unmounts `mnt`, retrying briefly (a process of the test may still hold it).
fn umount(mnt: &Path) {
    let m = mnt.to_string_lossy().into_owned();
    for _ in 0..20 {
        if sh("umount", &[&m]).status.success() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Last resort, so the loop device can go: detach lazily.
    let _ = sh("umount", &["-l", &m]);
}

/// A btrfs filesystem made in a file inside the test's directory, attached
/// to a loop device and mounted at `mnt`. Dropping it unmounts it, detaches
/// the loop device and removes the image, also when the test panicked.
pub struct LoopBtrfs {
    pub mnt: PathBuf,
    img: PathBuf,
    dev: Option<String>,
    mounted: bool,
}

impl LoopBtrfs {
    /// Mounts a fresh 128 MiB btrfs at `mnt` (created if needed). Fails the
    /// test when this machine has no usable loop devices (a container
    /// without /dev/loop-control, not root); `None` only when
    /// `SYSGEN_TEST_ALLOW_SKIP=1` lets it skip instead ([`crate::cannot_run`]).
    pub fn mount(img: &Path, mnt: &Path) -> Option<LoopBtrfs> {
        let mut fs = LoopBtrfs {
            mnt: mnt.to_owned(),
            img: img.to_owned(),
            dev: None,
            mounted: false,
        };
        fs::File::create(img)
            .and_then(|f| f.set_len(128 << 20))
            .expect("create the btrfs image");
        // Tests running in parallel race for free loop devices: retry.
        let mut o = sh("losetup", &["--find", "--show", &img.to_string_lossy()]);
        for _ in 0..10 {
            if o.status.success() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            o = sh("losetup", &["--find", "--show", &img.to_string_lossy()]);
        }
        if !o.status.success() {
            let why = String::from_utf8_lossy(&o.stderr).trim().to_owned();
            // Skipping is only for machines without loop devices at all.
            assert!(
                !Path::new("/dev/loop-control").exists(),
                "losetup failed although /dev/loop-control exists: {why}"
            );
            crate::cannot_run(
                "a btrfs test",
                &format!(
                    "no loop devices (no /dev/loop-control; losetup: {why}); it needs root and loop devices"
                ),
            );
            return None;
        }
        let dev = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        fs.dev = Some(dev.clone());
        must("mkfs.btrfs", &["-q", "-f", &dev]);
        fs::create_dir_all(mnt).expect("mkdir mount point");
        must("mount", &[&dev, &mnt.to_string_lossy()]);
        fs.mounted = true;
        Some(fs)
    }
}

impl Drop for LoopBtrfs {
    fn drop(&mut self) {
        if self.mounted {
            umount(&self.mnt);
        }
        if let Some(dev) = &self.dev {
            let _ = sh("losetup", &["-d", dev]);
        }
        let _ = fs::remove_file(&self.img);
    }
}

/// A tmpfs mounted at `mnt`, unmounted on drop.
pub struct Tmpfs {
    pub mnt: PathBuf,
}

impl Tmpfs {
    pub fn mount(mnt: &Path) -> Tmpfs {
        fs::create_dir_all(mnt).expect("mkdir mount point");
        must(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                "size=64m,mode=0755",
                "tmpfs",
                &mnt.to_string_lossy(),
            ],
        );
        Tmpfs {
            mnt: mnt.to_owned(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        umount(&self.mnt);
    }
}

/// Where the datasets of a test live: its root's own filesystem, a tmpfs,
/// or a btrfs on a loop device, mounted at `<root>/srv`.
pub enum Backing {
    RootFs,
    Tmpfs(Tmpfs),
    Btrfs(LoopBtrfs),
}

impl Backing {
    /// Prepares `<root>/srv` of `env` as `what` says ("ext4", "tmpfs",
    /// "btrfs"). `None` only when loop devices are unavailable and
    /// `SYSGEN_TEST_ALLOW_SKIP=1` lets the test skip.
    pub fn at_srv(env: &TestEnv, what: &str) -> Option<Backing> {
        let srv = env.at("/srv");
        Some(match what {
            "btrfs" => Backing::Btrfs(LoopBtrfs::mount(&env.dir.path().join("btrfs.img"), &srv)?),
            "tmpfs" => Backing::Tmpfs(Tmpfs::mount(&srv)),
            _ => {
                fs::create_dir_all(&srv).expect("mkdir /srv");
                Backing::RootFs
            }
        })
    }
}

/// `btrfs subvolume show` succeeds: `p` is a subvolume.
pub fn is_subvolume(p: &Path) -> bool {
    sh("btrfs", &["subvolume", "show", &p.to_string_lossy()])
        .status
        .success()
}

/// The `ro` property of a btrfs subvolume.
pub fn is_read_only(p: &Path) -> bool {
    must(
        "btrfs",
        &["property", "get", "-ts", &p.to_string_lossy(), "ro"],
    )
    .trim()
        == "ro=true"
}

/// Creates a btrfs subvolume (as an admin would, before sysgen).
pub fn make_subvolume(p: &Path) {
    must("btrfs", &["subvolume", "create", &p.to_string_lossy()]);
}

/// The zfs stand-in built with this package (see `src/bin/zfs-stand-in.rs`).
pub fn zfs_stand_in() -> PathBuf {
    let bin = TestEnv::sysgen_bin()
        .parent()
        .expect("target dir")
        .join("zfs-stand-in");
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}
