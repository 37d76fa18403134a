//! The user's path (issue 14): `sysgen switch CONFIG`, build included, as an
//! admin runs it, timed against `cp -a` and `rsync -a` of the same tree with
//! the runs interleaved (sysgen, cp, rsync, sysgen, ...); then `sysgen
//! switch CONFIG` again, which finds the active generation after the
//! unchanged build's stat pass.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::Command;

use crate::record::{Interleaved, Recorder};
use crate::{Ctx, on_path};

/// Keys of the operations measured here.
pub const FIRST: &str = "switch_config_first";
pub const ACTIVE: &str = "switch_config_active";
pub const CP: &str = "cp_a_interleaved";
pub const RSYNC: &str = "rsync_a_interleaved";

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
    let mut cp_cmd = |i: usize| {
        let mut c = Command::new("cp");
        c.arg("-a").arg(&ctx.a).arg(cp_base.join(i.to_string()));
        Ok(c)
    };
    let mut rsync_prep = |_| Ok(std::fs::create_dir_all(&rsync_base)?);
    let mut rsync_cmd = |i: usize| {
        let mut c = Command::new("rsync");
        // The trailing slash copies the tree's content, as cp -a does.
        let mut src = ctx.a.clone().into_os_string();
        src.push("/");
        c.arg("-a").arg(src).arg(rsync_base.join(i.to_string()));
        Ok(c)
    };
    let mut ops = vec![Interleaved {
        key: FIRST,
        label: first_label,
        tool: "sysgen",
        prep: &mut sysgen_prep,
        cmd: &mut sysgen_cmd,
    }];
    let cp_label = "cp -a of the tree, interleaved";
    if ctx.skipped("cp") {
        rec.skip(CP, cp_label, "cp", "--skip");
    } else {
        ops.push(Interleaved {
            key: CP,
            label: cp_label,
            tool: "cp",
            prep: &mut cp_prep,
            cmd: &mut cp_cmd,
        });
    }
    let rsync_label = "rsync -a of the tree, interleaved";
    if ctx.skipped("rsync") {
        rec.skip(RSYNC, rsync_label, "rsync", "--skip");
    } else if !on_path("rsync") {
        rec.skip(RSYNC, rsync_label, "rsync", "rsync is not installed");
    } else {
        ops.push(Interleaved {
            key: RSYNC,
            label: rsync_label,
            tool: "rsync",
            prep: &mut rsync_prep,
            cmd: &mut rsync_cmd,
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
}
