//! Reflink switches (issue 14, target 5): a loop btrfs sized from the
//! corpus holds a root and its state directory; the generation is built
//! there (untimed), then the first switch is timed, interleaved with `cp -a`
//! of the tree onto the same filesystem and `cp -a; sync -f`. The space of
//! the store plus the root is taken from `btrfs filesystem du` (shared
//! extents counted once) against the tree's own copy there, and from `df`.
//! Skipped, with a note, when not root or btrfs tools are missing.

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::record::{Interleaved, Recorder};
use crate::{Ctx, Result, on_path};

/// Keys of the operations measured here.
pub const SWITCH: &str = "reflink_switch_first";
pub const CP: &str = "reflink_cp_a";
pub const CP_SYNC: &str = "reflink_cp_a_sync";

/// What the store and the root take on the btrfs, in bytes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Space {
    /// `cp -a` of the tree onto the btrfs: its data and metadata, as
    /// `btrfs filesystem du` counts them (the tree's size on disk there).
    pub tree: u64,
    /// The store plus the root after the first switch, shared extents once.
    pub store_and_root: u64,
    /// The rest of the state directory (database, journal), for the record.
    pub state_other: u64,
    /// `df` used bytes, after the build and switch, less before the build.
    pub df_used: u64,
    /// The store's format (`<store>/format`; absent: zstd).
    pub format: String,
}

/// A loop device with a btrfs mounted at `mnt`; unmounted and detached on drop.
struct Mounted {
    mnt: PathBuf,
    dev: String,
    img: PathBuf,
}

impl Mounted {
    fn new(img: &Path, mnt: &Path, bytes: u64) -> Result<Mounted> {
        fs::File::create(img)?.set_len(bytes)?;
        let dev = must("losetup", &["--find", "--show", &s(img)])?;
        let m = Mounted {
            mnt: mnt.to_owned(),
            dev: dev.trim().to_owned(),
            img: img.to_owned(),
        };
        must("mkfs.btrfs", &["-q", "-f", &m.dev])?;
        fs::create_dir_all(mnt)?;
        must("mount", &[&m.dev, &s(mnt)])?;
        Ok(m)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // Best effort on the way out: what fails is printed, for a human.
        for (cmd, args) in [("umount", [s(&self.mnt)]), ("losetup", ["-d".into()])] {
            let mut c = Command::new(cmd);
            c.args(args);
            if cmd == "losetup" {
                c.arg(&self.dev);
            }
            if !c.status().is_ok_and(|st| st.success()) {
                eprintln!("[reflink] {cmd} of {} failed", self.dev);
            }
        }
        if let Err(e) = fs::remove_file(&self.img) {
            eprintln!("[reflink] removing {}: {e}", self.img.display());
        }
    }
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Runs `cmd args`; its stdout, or an error with its stderr.
fn must(cmd: &str, args: &[&str]) -> Result<String> {
    let o = Command::new(cmd).args(args).output()?;
    if !o.status.success() {
        return Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `btrfs filesystem du -s --raw p`: (total, exclusive, set shared).
fn btrfs_du(p: &Path) -> Result<(u64, u64, u64)> {
    let out = must("btrfs", &["filesystem", "du", "-s", "--raw", &s(p)])?;
    let line = out
        .lines()
        .nth(1)
        .ok_or("btrfs filesystem du: no summary")?;
    let cols: Vec<u64> = line
        .split_whitespace()
        .take(3)
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()?;
    match cols[..] {
        [t, e, sh] => Ok((t, e, sh)),
        _ => Err(format!("btrfs filesystem du: unexpected line {line:?}").into()),
    }
}

/// Used bytes of the filesystem at `p` (`df`), after a sync.
fn df_used(p: &Path) -> Result<u64> {
    crate::measure::sync();
    let out = must("df", &["-B1", "--output=used", &s(p)])?;
    Ok(out.lines().nth(1).ok_or("df: no line")?.trim().parse()?)
}

/// Why this machine cannot run it, if it cannot.
fn cannot_run() -> Option<String> {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (loop device, mount)".into());
    }
    ["losetup", "mkfs.btrfs", "btrfs", "mount", "df"]
        .into_iter()
        .find(|t| !on_path(t))
        .map(|t| format!("{t} is not installed"))
}

pub fn run(ctx: &Ctx, rec: &mut Recorder, corpus_du: u64) -> Option<Space> {
    let label = "first switch onto a loop btrfs (reflinks)";
    let why = if ctx.skipped("reflink") {
        Some("--skip".to_string())
    } else {
        cannot_run()
    };
    if let Some(why) = why {
        for (key, l, tool) in [
            (SWITCH, label, "sysgen"),
            (CP, "cp -a onto the loop btrfs", "cp"),
            (CP_SYNC, "cp -a; sync -f onto the loop btrfs", "cp"),
        ] {
            rec.skip(key, l, tool, &why);
        }
        return None;
    }
    let base = match ctx.fresh_dir("reflink") {
        Ok(b) => b,
        Err(e) => {
            rec.skip(SWITCH, label, "sysgen", &format!("work dir: {e}"));
            return None;
        }
    };
    // Store, root (shared with the store), two copies and metadata: each
    // run's trees are deleted before the next, so four times the tree
    // and a margin for btrfs's metadata (sparse: only what is written counts).
    let bytes = 4 * corpus_du + (1 << 30);
    let fs = match Mounted::new(&base.join("btrfs.img"), &base.join("mnt"), bytes) {
        Ok(m) => m,
        Err(e) => {
            rec.skip(SWITCH, label, "sysgen", &format!("loop btrfs: {e}"));
            return None;
        }
    };
    let space = measure(ctx, rec, label, &fs.mnt);
    drop(fs);
    if let Err(e) = fs::remove_dir_all(&base) {
        eprintln!("[reflink] removing {}: {e}", base.display());
    }
    match space {
        Ok(s) => s,
        Err(e) => {
            eprintln!("[reflink] {e}");
            None
        }
    }
}

fn measure(ctx: &Ctx, rec: &mut Recorder, label: &str, mnt: &Path) -> Result<Option<Space>> {
    let host = |i: usize| mnt.join(format!("sg-{i}"));
    let cp_dir = |i: usize| mnt.join(format!("cp-{i}"));
    let cps_dir = |i: usize| mnt.join(format!("cps-{i}"));
    let before = RefCell::new(0u64);
    let ids = RefCell::new(Vec::<String>::new());
    // Each run's predecessor goes first (untimed), so the filesystem holds
    // one run of each at a time; the last runs stay to be measured.
    let remove = |p: PathBuf| -> Result<()> {
        if p.exists() {
            fs::remove_dir_all(p)?;
        }
        Ok(())
    };
    let mut prep = |i: usize| -> Result<()> {
        // The round before is all gone before `df` is read (its copies too).
        let last = i.wrapping_sub(1);
        for p in [host(last), cp_dir(last), cps_dir(last)] {
            remove(p)?;
        }
        let h = host(i);
        fs::create_dir_all(h.join("root"))?;
        *before.borrow_mut() = df_used(mnt)?;
        let r = ctx.untimed(
            "reflink-build",
            ctx.sysgen(
                &h.join("root"),
                &h.join("state"),
                &["build", &s(&ctx.cfg_a)],
            ),
        )?;
        let id = crate::ops::json_id(&r.stdout_text()).ok_or("sysgen build printed no id")?;
        ids.borrow_mut().push(id);
        Ok(())
    };
    let mut cmd = |i: usize| {
        let h = host(i);
        let id = ids.borrow().last().cloned().unwrap_or_default();
        Ok(ctx.sysgen(&h.join("root"), &h.join("state"), &["switch", &id]))
    };
    // The copies of the round before went with sysgen's prep.
    let mut cp_prep = |_| Ok(());
    let mut cp_run = |i: usize| {
        let mut c = Command::new("cp");
        c.arg("-a").arg(&ctx.a).arg(cp_dir(i));
        Ok(c)
    };
    let mut cps_prep = |_| Ok(());
    let mut cps_run = |i: usize| {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(r#"cp -a "$1" "$2" && sync -f "$2""#)
            .arg("sh")
            .arg(&ctx.a)
            .arg(cps_dir(i));
        Ok(c)
    };
    let mut ops = [
        Interleaved {
            key: SWITCH,
            label,
            tool: "sysgen",
            prep: &mut prep,
            cmd: &mut cmd,
        },
        Interleaved {
            key: CP,
            label: "cp -a onto the loop btrfs",
            tool: "cp",
            prep: &mut cp_prep,
            cmd: &mut cp_run,
        },
        Interleaved {
            key: CP_SYNC,
            label: "cp -a; sync -f onto the loop btrfs",
            tool: "cp",
            prep: &mut cps_prep,
            cmd: &mut cps_run,
        },
    ];
    let n = ctx.runs;
    if !rec.measure_interleaved("[reflink]", n, &mut ops) {
        return Ok(None);
    }
    // The last sysgen run's host (`df` was read before its build, with
    // nothing else on the filesystem; the copies made since go first).
    let h = host(n);
    let tree = btrfs_du(&cp_dir(n))?.0;
    remove(cp_dir(n))?;
    remove(cps_dir(n))?;
    let used = df_used(mnt)?.saturating_sub(*before.borrow());
    let state = h.join("state");
    let (_, excl, shared) = btrfs_du(&h)?;
    let mut state_other = 0;
    for e in fs::read_dir(&state)? {
        let e = e?;
        if e.file_name() != "store" {
            state_other += btrfs_du(&e.path())?.0;
        }
    }
    let format = fs::read_to_string(state.join("store/format"))
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|_| "zstd".into());
    Ok(Some(Space {
        tree,
        store_and_root: (excl + shared).saturating_sub(state_other),
        state_other,
        df_used: used,
        format,
    }))
}
