//! sysgen's operations (SPEC §3), each timed over several runs.

use crate::record::Recorder;
use crate::report::{GcSpace, Sizes};
use crate::users_path::Copy;
use crate::{Ctx, Result, corpus, measure, users_path, write_config};
use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};

/// The generation id in a `--json` answer: top-level `id`, else the first `id` found.
/// The number at `key` anywhere in a JSON document.
pub fn json_u64(text: &str, key: &str) -> Option<u64> {
    fn find(v: &serde_json::Value, key: &str) -> Option<u64> {
        match v {
            serde_json::Value::Object(m) => m
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .or_else(|| m.values().find_map(|v| find(v, key))),
            serde_json::Value::Array(a) => a.iter().find_map(|v| find(v, key)),
            _ => None,
        }
    }
    find(&serde_json::from_str(text.trim()).ok()?, key)
}

pub fn json_id(text: &str) -> Option<String> {
    fn find(v: &serde_json::Value) -> Option<String> {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::String(s)) = m.get("id") {
                    return Some(s.clone());
                }
                m.values().find_map(find)
            }
            serde_json::Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    find(&v)
}

/// A root and a state directory outside it.
#[derive(Clone)]
struct Host {
    root: PathBuf,
    state: PathBuf,
}

impl Host {
    fn fresh(ctx: &Ctx, rel: &str) -> Result<Host> {
        let base = ctx.fresh_dir(rel)?;
        let h = Host {
            root: base.join("root"),
            state: base.join("state"),
        };
        fs::create_dir_all(&h.root)?;
        Ok(h)
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Build `cfg` untimed; the generation id.
fn build_untimed(ctx: &Ctx, h: &Host, cfg: &Path) -> Result<String> {
    let r = ctx.untimed(
        "build",
        ctx.sysgen(&h.root, &h.state, &["build", &path_str(cfg)]),
    )?;
    json_id(&r.stdout_text()).ok_or_else(|| "sysgen build --json printed no \"id\"".into())
}

fn switch_untimed(ctx: &Ctx, h: &Host, target: &str) -> Result<()> {
    ctx.untimed("switch", ctx.sysgen(&h.root, &h.state, &["switch", target]))?;
    Ok(())
}

pub fn run_all(ctx: &Ctx, rec: &mut Recorder, sizes: &mut Sizes) {
    let n = ctx.runs;
    let cfg_a = path_str(&ctx.cfg_a);

    // 1. build into an empty store: a fresh state directory per run.
    let mut built: Option<(Host, String)> = None;
    if ctx.skipped("build-empty") {
        rec.skip(
            "build_empty",
            "build into an empty store",
            "sysgen",
            "--skip",
        );
    } else {
        let hosts = RefCell::new(Vec::new());
        let ok = rec.measure(
            "[1/8]",
            "build_empty",
            "build into an empty store",
            "sysgen",
            n,
            &mut |i| {
                hosts
                    .borrow_mut()
                    .push(Host::fresh(ctx, &format!("sg/build-empty/{i}"))?);
                Ok(())
            },
            &mut |i| {
                let h = &hosts.borrow()[i - 1];
                Ok(ctx.sysgen(&h.root, &h.state, &["build", &cfg_a]))
            },
        );
        let last = hosts.borrow().last().cloned();
        if let (true, Some(h)) = (ok, last) {
            let id = rec
                .get("build_empty")
                .and_then(|o| o.runs.last())
                .and_then(|r| json_id(&r.stdout_text()));
            match id {
                Some(id) => built = Some((h, id)),
                None => eprintln!("[1/8] sysgen build --json printed no \"id\""),
            }
        }
    }
    let built = built.or_else(|| {
        let h = Host::fresh(ctx, "sg/build-state").ok()?;
        match build_untimed(ctx, &h, &ctx.cfg_a) {
            Ok(id) => Some((h, id)),
            Err(e) => {
                eprintln!("setup build failed: {e}");
                None
            }
        }
    });
    if let Some((h, _)) = &built {
        sizes.sysgen_state_after_build = Some(measure::disk_usage(&h.state));
        let store = h.state.join("store");
        if store.is_dir() {
            sizes.sysgen_store_after_build = Some(measure::disk_usage(&store));
        }
    }

    // 2. build of the unchanged tree: warm store and stat cache.
    match (&built, ctx.skipped("build-unchanged")) {
        (_, true) => rec.skip(
            "build_unchanged",
            "build of the unchanged tree",
            "sysgen",
            "--skip",
        ),
        (None, _) => rec.skip(
            "build_unchanged",
            "build of the unchanged tree",
            "sysgen",
            "no built generation",
        ),
        (Some((h, _)), false) => {
            rec.measure(
                "[2/8]",
                "build_unchanged",
                "build of the unchanged tree",
                "sysgen",
                n,
                &mut |_| Ok(()),
                &mut |_| Ok(ctx.sysgen(&h.root, &h.state, &["build", &cfg_a])),
            );
        }
    }

    // 3. diff between two generations 1% apart.
    let label = "diff of generations 1% apart";
    match (&built, ctx.skipped("diff")) {
        (_, true) => rec.skip("diff", label, "sysgen", "--skip"),
        (None, _) => rec.skip("diff", label, "sysgen", "no built generation"),
        (Some((h, id_a)), false) => match build_untimed(ctx, h, &ctx.cfg_b) {
            Err(e) => rec.skip("diff", label, "sysgen", &format!("build of B failed: {e}")),
            Ok(id_b) => {
                rec.measure(
                    "[3/8]",
                    "diff",
                    label,
                    "sysgen",
                    n,
                    &mut |_| Ok(()),
                    &mut |_| Ok(ctx.sysgen(&h.root, &h.state, &["diff", id_a, &id_b])),
                );
            }
        },
    }

    // Steps 1-3's stores are done with (their sizes are taken).
    if let Err(e) = ctx.release(&["sg/build-empty", "sg/build-state"]) {
        eprintln!("[reclaim] {e}");
    }

    // 4. first switch onto an empty root: fresh root and state per run, the
    //    generation built beforehand (untimed), so this is materialization.
    let label = "first switch onto an empty root";
    let mut switched: Option<(Host, String)> = None;
    if ctx.skipped("switch-first") {
        rec.skip("switch_first", label, "sysgen", "--skip");
    } else {
        // Interleaved with the copies it is compared with (sysgen, cp,
        // rsync, sysgen, ...), so a drift of the disk reaches all alike.
        let hosts = RefCell::new(Vec::<(Host, String)>::new());
        let mut prep = |i: usize| {
            let h = Host::fresh(ctx, &format!("sg/switch-first/{i}"))?;
            let id = build_untimed(ctx, &h, &ctx.cfg_a)?;
            hosts.borrow_mut().push((h, id));
            Ok(())
        };
        let mut cmd = |i: usize| {
            let (h, id) = &hosts.borrow()[i - 1];
            Ok(ctx.sysgen(&h.root, &h.state, &["switch", id]))
        };
        // The copy made durable as the switch is (`cp -a; sync -f`) gives
        // the share of the ratio that is the switch's own sync.
        let copies = [
            Copy {
                key: "cp_a",
                label: "cp -a of the tree",
                tool: "cp",
                dir: "anchors/cp",
                cmd: users_path::cp_cmd,
            },
            Copy {
                key: "cp_a_sync",
                label: "cp -a; sync -f of the tree",
                tool: "cp",
                dir: "anchors/cp-sync",
                cmd: users_path::cp_sync_cmd,
            },
            Copy {
                key: "rsync_a",
                label: "rsync -a of the tree",
                tool: "rsync",
                dir: "anchors/rsync",
                cmd: users_path::rsync_cmd,
            },
        ];
        users_path::with_copies(
            ctx,
            rec,
            "[4/8]",
            ("switch_first", label),
            &mut prep,
            &mut cmd,
            &copies,
        );
        if rec.get("switch_first").is_some_and(|o| o.error.is_none()) {
            switched = hosts.borrow().last().cloned();
        }
    }
    let switched = switched.or_else(|| {
        let h = Host::fresh(ctx, "sg/switch-state").ok()?;
        let r = build_untimed(ctx, &h, &ctx.cfg_a)
            .and_then(|id| switch_untimed(ctx, &h, &id).map(|_| id));
        match r {
            Ok(id) => Some((h, id)),
            Err(e) => {
                eprintln!("setup switch failed: {e}");
                None
            }
        }
    });

    if let Some((h, _)) = &switched {
        sizes.sysgen_root_after_switch = Some(measure::disk_usage(&h.root));
    }

    // 5. switch between generations 1% apart: A→B, B→A, … (B built beforehand).
    let label = "switch between generations 1% apart";
    let mut active = switched.as_ref().map(|(_, id)| id.clone());
    match (&switched, ctx.skipped("switch-1pct")) {
        (_, true) => rec.skip("switch_1pct", label, "sysgen", "--skip"),
        (None, _) => rec.skip("switch_1pct", label, "sysgen", "no switched root"),
        (Some((h, id_a)), false) => match build_untimed(ctx, h, &ctx.cfg_b) {
            Err(e) => rec.skip(
                "switch_1pct",
                label,
                "sysgen",
                &format!("build of B failed: {e}"),
            ),
            Ok(id_b) => {
                let target = |i: usize| if i % 2 == 1 { &id_b } else { id_a };
                let ok = rec.measure(
                    "[5/8]",
                    "switch_1pct",
                    label,
                    "sysgen",
                    n,
                    &mut |_| Ok(()),
                    &mut |i| Ok(ctx.sysgen(&h.root, &h.state, &["switch", target(i)])),
                );
                let done = rec
                    .get("switch_1pct")
                    .map_or(0, |o| o.runs.iter().filter(|r| r.ok()).count());
                if done > 0 {
                    active = Some(target(done).clone());
                }
                if !ok {
                    active = None;
                }
            }
        },
    }

    // 6. switch to the active generation (a no-op).
    let label = "switch to the active generation";
    match (&switched, &active, ctx.skipped("switch-active")) {
        (_, _, true) => rec.skip("switch_active", label, "sysgen", "--skip"),
        (Some((h, _)), Some(id), false) => {
            rec.measure(
                "[6/8]",
                "switch_active",
                label,
                "sysgen",
                n,
                &mut |_| Ok(()),
                &mut |_| Ok(ctx.sysgen(&h.root, &h.state, &["switch", id])),
            );
        }
        _ => rec.skip("switch_active", label, "sysgen", "no switched root"),
    }

    // 7. verify the whole root against its generation (before gc: with
    // --reclaim the switched root is then deleted, as gc makes its own and
    // a million files' worth of both did not fit in 76 GiB).
    let label = "verify the root";
    match (&switched, ctx.skipped("verify")) {
        (_, true) => rec.skip("verify", label, "sysgen", "--skip"),
        (None, _) => rec.skip("verify", label, "sysgen", "no switched root"),
        (Some((h, _)), false) => {
            rec.measure(
                "[7/8]",
                "verify",
                label,
                "sysgen",
                n,
                &mut |_| Ok(()),
                &mut |_| Ok(ctx.sysgen(&h.root, &h.state, &["verify"])),
            );
        }
    }
    if let Err(e) = ctx.release(&["sg/switch-first", "sg/switch-state"]) {
        eprintln!("[reclaim] {e}");
    }

    // 8. gc after dropping one generation of twenty.
    let label = "gc dropping one generation of twenty";
    if ctx.skipped("gc") {
        rec.skip("gc", label, "sysgen", "--skip");
    } else {
        let done = gc(ctx, rec, sizes);
        // Its trees go whether it worked or not: a failed setup left a
        // million files' worth behind for the steps after it (session 12).
        if let Err(e) = ctx.release(&["sg/gc"]) {
            eprintln!("[reclaim] {e}");
        }
        if let Err(e) = done {
            rec.skip("gc", label, "sysgen", &format!("setup failed: {e}"));
        }
    }
}

/// Twenty generations by 0.1% mutations, switched through; then `gc --keep 19`
/// per run, after one more mutation + switch for runs after the first.
fn gc(ctx: &Ctx, rec: &mut Recorder, sizes: &mut Sizes) -> Result<()> {
    let h = Host::fresh(ctx, "sg/gc")?;
    let src = h.root.parent().unwrap_or(&ctx.work).join("src");
    crate::copy_tree(&ctx.a, &src)?;
    let cfg = ctx.work.join("configs/gc.json");
    write_config(&cfg, &src)?;
    let cfg_s = path_str(&cfg);
    let spec = corpus::MutationSpec::per_mille(ctx.nfiles, 1);
    let mut round = 100u32;
    for g in 1..=20 {
        eprintln!("[8/8] gc: setting up generation {g}/20 ...");
        if g > 1 {
            round += 1;
            corpus::mutate(&src, spec, ctx.seed, round)?;
        }
        switch_untimed(ctx, &h, &cfg_s)?;
    }
    sizes.sysgen_state_20_generations = Some(measure::disk_usage(&h.state));
    let round = RefCell::new(round);
    rec.measure(
        "[8/8]",
        "gc",
        "gc dropping one generation of twenty",
        "sysgen",
        ctx.runs,
        &mut |i| {
            if i > 1 {
                let mut r = round.borrow_mut();
                *r += 1;
                corpus::mutate(&src, spec, ctx.seed, *r)?;
                switch_untimed(ctx, &h, &cfg_s)?;
            }
            Ok(())
        },
        &mut |_| Ok(ctx.sysgen(&h.root, &h.state, &["gc", "--keep", "19"])),
    );
    sizes.sysgen_state_after_gc = Some(measure::disk_usage(&h.state));
    // Issue 14's space target, once more after the timed runs: one more
    // generation, then `du` of the state directory around one drop, beside
    // what gc says only the dropped generation's objects took.
    let mut r = round.borrow_mut();
    *r += 1;
    corpus::mutate(&src, spec, ctx.seed, *r)?;
    switch_untimed(ctx, &h, &cfg_s)?;
    let before = measure::disk_usage(&h.state);
    let out = ctx.untimed("gc", ctx.sysgen(&h.root, &h.state, &["gc", "--keep", "19"]))?;
    let after = measure::disk_usage(&h.state);
    sizes.gc_space = Some(GcSpace {
        only_dropped: json_u64(&out.stdout_text(), "bytes_freed")
            .ok_or("gc --json printed no bytes_freed")?,
        state_before: before,
        state_after: after,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ids() {
        assert_eq!(
            json_id(r#"{"id":"abc","number":3}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(
            json_id(r#"{"generation":{"number":1,"id":"def"}}"#).as_deref(),
            Some("def")
        );
        assert_eq!(json_id("not json"), None);
        assert_eq!(
            json_u64(r#"{"gc":{"bytes_freed":42}}"#, "bytes_freed"),
            Some(42)
        );
        assert_eq!(json_u64(r#"{"bytes_freed":"x"}"#, "bytes_freed"), None);
    }
}
