//! The user's path (issue 14): `sysgen switch CONFIG`, build included, as an
//! admin runs it, timed against `cp -a` and `rsync -a` of the same tree with
//! the runs interleaved (sysgen, cp, rsync, sysgen, ...); then `sysgen
//! switch CONFIG` again, which finds the active generation after the
//! unchanged build's stat pass.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::record::{Cmd, Interleaved, Prep, Recorder};
use crate::{Ctx, on_path};

/// Keys of the operations measured here.
pub const FIRST: &str = "switch_config_first";
pub const ACTIVE: &str = "switch_config_active";
pub const CP: &str = "cp_a_interleaved";
pub const RSYNC: &str = "rsync_a_interleaved";

/// `cp -a` of the corpus to `base/<i>`.
pub fn cp_cmd(ctx: &Ctx, base: &Path, i: usize) -> Command {
    let mut c = Command::new("cp");
    c.arg("-a").arg(&ctx.a).arg(base.join(i.to_string()));
    c
}

/// `cp -a` of the corpus to `base/<i>`, then `sync -f` of the copy: what
/// a durable copy costs, as a switch is durable (it syncs its file system
/// before it records the generation as active).
pub fn cp_sync_cmd(ctx: &Ctx, base: &Path, i: usize) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(r#"cp -a "$1" "$2" && sync -f "$2""#)
        .arg("sh")
        .arg(&ctx.a)
        .arg(base.join(i.to_string()));
    c
}

/// `rsync -a` of the corpus's content to `base/<i>` (the trailing slash
/// copies the content, as `cp -a` to a new name does).
pub fn rsync_cmd(ctx: &Ctx, base: &Path, i: usize) -> Command {
    let mut c = Command::new("rsync");
    let mut src = ctx.a.clone().into_os_string();
    src.push("/");
    c.arg("-a").arg(src).arg(base.join(i.to_string()));
    c
}

/// True if the anchor `tool` (run as `exe`) is to be measured; otherwise
/// records `key` as skipped, with why.
pub fn anchor_wanted(
    ctx: &Ctx,
    rec: &mut Recorder,
    (key, label): (&str, &str),
    tool: &str,
    exe: &str,
) -> bool {
    let why = if ctx.skipped(tool) {
        "--skip".to_string()
    } else if !on_path(exe) {
        format!("{exe} is not installed")
    } else {
        return true;
    };
    rec.skip(key, label, tool, &why);
    false
}

/// A copy of the corpus timed beside a switch: its key and label in the
/// report, the tool it needs, where its copies go (under the work
/// directory), and its command for run `i` into that directory.
pub struct Copy {
    pub key: &'static str,
    pub label: &'static str,
    pub tool: &'static str,
    pub dir: &'static str,
    pub cmd: fn(&Ctx, &Path, usize) -> Command,
}

/// Times sysgen's operation (`key`, `label`, `prep`, `cmd`) interleaved
/// with each of `copies` that is wanted (sysgen, copy, copy, sysgen, ...),
/// so that a drift of the disk reaches every side alike; then gives the
/// copies' space back (with `--reclaim`, each copy's as soon as the next
/// copy is about to be made). True if all succeeded.
pub fn with_copies(
    ctx: &Ctx,
    rec: &mut Recorder,
    step: &str,
    (key, label): (&str, &str),
    prep: Prep<'_>,
    cmd: Cmd<'_>,
    copies: &[Copy],
) -> bool {
    type Run<'c> = Box<dyn FnMut(usize) -> crate::Result<Command> + 'c>;
    type Make<'c> = Box<dyn FnMut(usize) -> crate::Result<()> + 'c>;
    let mut sides: Vec<(&Copy, Make<'_>, Run<'_>)> = Vec::new();
    for c in copies {
        if anchor_wanted(ctx, rec, (c.key, c.label), c.tool, c.tool) {
            let base = ctx.work.join(c.dir);
            let made = base.clone();
            // With --reclaim, the other copies' trees (measured already) go
            // before this copy is made: at a million files, sysgen's root and
            // three copies at once did not fit in 76 GiB (session 12).
            let others: Vec<&str> = copies
                .iter()
                .map(|o| o.dir)
                .filter(|d| *d != c.dir)
                .collect();
            sides.push((
                c,
                Box::new(move |_| {
                    ctx.release(&others)?;
                    Ok(std::fs::create_dir_all(&made)?)
                }),
                Box::new(move |i| Ok((c.cmd)(ctx, &base, i))),
            ));
        }
    }
    let mut ops = vec![Interleaved {
        key,
        label,
        tool: "sysgen",
        prep,
        cmd,
    }];
    for (c, make, run) in &mut sides {
        ops.push(Interleaved {
            key: c.key,
            label: c.label,
            tool: c.tool,
            prep: make.as_mut(),
            cmd: run.as_mut(),
        });
    }
    let ok = rec.measure_interleaved(step, ctx.runs, &mut ops);
    let dirs: Vec<&str> = copies.iter().map(|c| c.dir).collect();
    if let Err(e) = ctx.release(&dirs) {
        eprintln!("[reclaim] {e}");
    }
    ok
}

pub fn run(ctx: &Ctx, rec: &mut Recorder) {
    let first_label = "switch CONFIG onto an empty root (build included)";
    let active_label = "switch CONFIG, already active (build included)";
    if ctx.skipped("switch-config") {
        rec.skip(FIRST, first_label, "sysgen", "--skip");
        rec.skip(ACTIVE, active_label, "sysgen", "--skip");
        return;
    }
    let cfg = ctx.cfg_a.to_string_lossy().into_owned();
    // (root, state) of each run, fresh every time.
    let hosts = RefCell::new(Vec::<(PathBuf, PathBuf)>::new());
    let mut sysgen_prep = |i: usize| {
        let base = ctx.fresh_dir(&format!("sg/switch-config/{i}"))?;
        std::fs::create_dir_all(base.join("root"))?;
        hosts
            .borrow_mut()
            .push((base.join("root"), base.join("state")));
        Ok(())
    };
    let mut sysgen_cmd = |i: usize| {
        let (root, state) = &hosts.borrow()[i - 1];
        Ok(ctx.sysgen(root, state, &["switch", &cfg]))
    };
    let copies = [
        Copy {
            key: CP,
            label: "cp -a of the tree, interleaved",
            tool: "cp",
            dir: "anchors/cp-interleaved",
            cmd: cp_cmd,
        },
        Copy {
            key: RSYNC,
            label: "rsync -a of the tree, interleaved",
            tool: "rsync",
            dir: "anchors/rsync-interleaved",
            cmd: rsync_cmd,
        },
    ];
    let ok = with_copies(
        ctx,
        rec,
        "[user's path]",
        (FIRST, first_label),
        &mut sysgen_prep,
        &mut sysgen_cmd,
        &copies,
    );
    let last = hosts.borrow().last().cloned();
    match last {
        Some((root, state)) if ok => {
            rec.measure(
                "[user's path]",
                ACTIVE,
                active_label,
                "sysgen",
                ctx.runs,
                &mut |_| Ok(()),
                &mut |_| Ok(ctx.sysgen(&root, &state, &["switch", &cfg])),
            );
        }
        _ => rec.skip(ACTIVE, active_label, "sysgen", "the first switch failed"),
    }
    if let Err(e) = ctx.release(&["sg/switch-config"]) {
        eprintln!("[reclaim] {e}");
    }
}
