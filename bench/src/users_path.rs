//! The user's path (issue 14): `sysgen switch CONFIG`, build included, as an
//! admin runs it, timed against `cp -a` and `rsync -a` of the same tree with
//! the runs interleaved (sysgen, cp, rsync, sysgen, ...); then `sysgen
//! switch CONFIG` again, which finds the active generation after the
//! unchanged build's stat pass.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::record::{Interleaved, Recorder};
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
    let cp_base = ctx.work.join("anchors/cp-interleaved");
    let rsync_base = ctx.work.join("anchors/rsync-interleaved");
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
    let mut cp_prep = |_| Ok(std::fs::create_dir_all(&cp_base)?);
    let mut cp_run = |i: usize| Ok(cp_cmd(ctx, &cp_base, i));
    let mut rsync_prep = |_| Ok(std::fs::create_dir_all(&rsync_base)?);
    let mut rsync_run = |i: usize| Ok(rsync_cmd(ctx, &rsync_base, i));
    let mut ops = vec![Interleaved {
        key: FIRST,
        label: first_label,
        tool: "sysgen",
        prep: &mut sysgen_prep,
        cmd: &mut sysgen_cmd,
    }];
    let cp_op = (CP, "cp -a of the tree, interleaved");
    if anchor_wanted(ctx, rec, cp_op, "cp", "cp") {
        ops.push(Interleaved {
            key: cp_op.0,
            label: cp_op.1,
            tool: "cp",
            prep: &mut cp_prep,
            cmd: &mut cp_run,
        });
    }
    let rsync_op = (RSYNC, "rsync -a of the tree, interleaved");
    if anchor_wanted(ctx, rec, rsync_op, "rsync", "rsync") {
        ops.push(Interleaved {
            key: rsync_op.0,
            label: rsync_op.1,
            tool: "rsync",
            prep: &mut rsync_prep,
            cmd: &mut rsync_run,
        });
    }
    let ok = rec.measure_interleaved("[user's path]", ctx.runs, &mut ops);
    drop(ops);
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
    let done = [
        "sg/switch-config",
        "anchors/cp-interleaved",
        "anchors/rsync-interleaved",
    ];
    if let Err(e) = ctx.release(&done) {
        eprintln!("[reclaim] {e}");
    }
}
