//! Ratios against the targets, and the human, JSON and markdown reports.

use crate::record::Recorder;
use crate::{Ctx, on_path};
use serde::Serialize;
use std::fmt::Write as _;
use std::process::Command;

/// Sizes on disk (bytes, as `du`) measured during the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sizes {
    /// Sum of the corpus's regular file sizes.
    pub corpus_bytes: u64,
    pub corpus_disk_usage: u64,
    /// The whole state directory after building generation A into an empty store.
    pub sysgen_state_after_build: Option<u64>,
    /// `<state>/store` after that build, when the state directory has one.
    pub sysgen_store_after_build: Option<u64>,
    /// The root after the first switch (generation A onto an empty root).
    pub sysgen_root_after_switch: Option<u64>,
    pub sysgen_state_20_generations: Option<u64>,
    pub sysgen_state_after_gc: Option<u64>,
    /// One more drop of the oldest of twenty generations, measured alone.
    pub gc_space: Option<GcSpace>,
    pub git_objects_after_commit: Option<u64>,
    pub ostree_repo_after_commit: Option<u64>,
    pub nix_store_after_add: Option<u64>,
    /// The store plus the root on a loop btrfs after a reflink switch.
    pub reflink: Option<crate::reflink::Space>,
}

/// Issue 14, target 6: what one gc of the oldest of twenty generations gave
/// back, against what only that generation used.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcSpace {
    /// gc's `bytes_freed`: the store's objects only the dropped generation
    /// had, as they were on disk.
    pub only_dropped: u64,
    /// `du` of the state directory just before and just after that gc.
    pub state_before: u64,
    pub state_after: u64,
}

impl GcSpace {
    /// The share of `only_dropped` that `du` saw go (target ≥ 0.9).
    pub fn freed_share(&self) -> Option<f64> {
        (self.only_dropped > 0).then(|| {
            self.state_before.saturating_sub(self.state_after) as f64 / self.only_dropped as f64
        })
    }
}

/// One line of the comparison table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub operation: String,
    pub unit: &'static str,
    pub sysgen: Option<f64>,
    pub sysgen_min: Option<f64>,
    pub sysgen_max: Option<f64>,
    pub anchor: String,
    pub anchor_value: Option<f64>,
    pub ratio: Option<f64>,
    pub target: String,
    pub met: Option<bool>,
    pub note: Option<String>,
}

/// (sysgen operation, anchor operation, target ratio, strictly below?)
const TIME_TARGETS: &[(&str, &str, Option<f64>, bool)] = &[
    ("build_empty", "nix_add", Some(0.5), false),
    ("build_empty", "git_commit", Some(0.25), false),
    ("build_empty", "ostree_commit", Some(0.33), false),
    ("build_unchanged", "git_status", Some(1.0), false),
    ("build_unchanged", "ostree_commit_unchanged", None, false),
    ("diff", "git_diff", Some(0.1), false),
    ("diff", "ostree_diff", None, false),
    ("switch_first", "cp_a", Some(1.2), false),
    ("switch_first", "ostree_checkout", Some(1.0), true),
    ("switch_first", "git_checkout", Some(1.0), true),
    ("switch_1pct", "git_checkout_1pct", Some(1.0), false),
    ("switch_active", "git_status", Some(1.0), false),
    ("gc", "git_prune", Some(1.0), false),
    ("gc", "ostree_prune", None, false),
    ("verify", "b3sum", Some(1.5), false),
    ("switch_first", "rsync_a", None, false),
    ("switch_first", "cp_a_sync", None, false),
    ("switch_config_first", "cp_a_interleaved", Some(1.2), false),
    ("switch_config_first", "rsync_a_interleaved", None, false),
    ("switch_config_active", "git_status", Some(1.0), false),
    (crate::reflink::SWITCH, crate::reflink::CP, Some(0.5), false),
    (
        crate::reflink::SWITCH,
        crate::reflink::CP_SYNC,
        Some(0.5),
        false,
    ),
];

const MIB: f64 = 1024.0 * 1024.0;

fn why_missing(rec: &Recorder, key: &str) -> String {
    match rec.get(key) {
        None => "not run".into(),
        Some(o) => o
            .skipped
            .clone()
            .or_else(|| o.error.clone())
            .unwrap_or_else(|| "no successful run".into()),
    }
}

pub fn comparisons(rec: &Recorder, sizes: &Sizes, nfiles: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for &(s, a, target, strict) in TIME_TARGETS {
        let so = rec.get(s);
        let ao = rec.get(a);
        let sw = so.and_then(|o| o.wall);
        let aw = ao.and_then(|o| o.wall);
        let ratio = match (sw, aw) {
            (Some(x), Some(y)) if y.median > 0.0 => Some(x.median / y.median),
            _ => None,
        };
        let met = match (ratio, target) {
            (Some(r), Some(t)) => Some(if strict { r < t } else { r <= t }),
            _ => None,
        };
        let note = if sw.is_none() {
            Some(format!("sysgen: {}", why_missing(rec, s)))
        } else if aw.is_none() {
            Some(format!("anchor: {}", why_missing(rec, a)))
        } else {
            None
        };
        rows.push(Row {
            operation: so.map_or(s.to_string(), |o| o.label.clone()),
            unit: "s",
            sysgen: sw.map(|w| w.median),
            sysgen_min: sw.map(|w| w.min),
            sysgen_max: sw.map(|w| w.max),
            anchor: ao.map_or(a.to_string(), |o| o.label.clone()),
            anchor_value: aw.map(|w| w.median),
            ratio,
            target: match target {
                Some(t) if strict => format!("< {t}"),
                Some(t) => format!("<= {t}"),
                None => "—".into(),
            },
            met,
            note,
        });
    }
    // Issue 14's targets at a million files: the memory of every operation
    // bounded (streaming, not holding every path), a no-op switch instant.
    let million = nfiles >= 1_000_000;
    let rss_limit = if million { 300.0 } else { 100.0 };
    if million {
        let w = rec.get("switch_active").and_then(|o| o.wall);
        rows.push(Row {
            operation: "switch to the active generation, at a million files".into(),
            unit: "s",
            sysgen: w.map(|w| w.median),
            sysgen_min: w.map(|w| w.min),
            sysgen_max: w.map(|w| w.max),
            anchor: "—".into(),
            anchor_value: None,
            ratio: None,
            target: "< 10 ms".into(),
            met: w.map(|w| w.median < 0.010),
            note: None,
        });
    }
    // Peak RSS over all of sysgen's operations (each one's is in the table
    // of all operations).
    let rss = rec
        .ops
        .iter()
        .filter(|o| o.tool == "sysgen")
        .filter_map(|o| o.maxrss_kib.map(|k| (k, o.label.clone())))
        .max();
    rows.push(Row {
        operation: match &rss {
            Some((_, l)) => format!("peak RSS of sysgen (in: {l})"),
            None => "peak RSS of sysgen".into(),
        },
        unit: "MiB",
        sysgen: rss.as_ref().map(|(k, _)| *k as f64 / 1024.0),
        sysgen_min: None,
        sysgen_max: None,
        anchor: "—".into(),
        anchor_value: None,
        ratio: None,
        target: format!("< {rss_limit} MiB"),
        met: rss.as_ref().map(|(k, _)| (*k as f64 / 1024.0) < rss_limit),
        note: None,
    });
    // Issue 14's target 5: the store and the root share their extents.
    if let Some(sp) = &sizes.reflink {
        let ratio = (sp.tree > 0).then(|| sp.store_and_root as f64 / sp.tree as f64);
        rows.push(Row {
            operation: format!(
                "store + root on btrfs after a reflink switch ({})",
                sp.format
            ),
            unit: "MiB",
            sysgen: Some(sp.store_and_root as f64 / MIB),
            sysgen_min: None,
            sysgen_max: None,
            anchor: "the tree (cp -a there)".into(),
            anchor_value: Some(sp.tree as f64 / MIB),
            ratio,
            target: "<= 1.1".into(),
            met: ratio.map(|r| r <= 1.1),
            note: Some(format!(
                "df: {:.1} MiB used by build and switch; rest of the state dir {:.1} MiB",
                sp.df_used as f64 / MIB,
                sp.state_other as f64 / MIB
            )),
        });
    }
    // Issue 14, target 6: `du` of the state directory around one drop.
    if let Some(g) = &sizes.gc_space {
        let share = g.freed_share();
        rows.push(Row {
            operation: "space gc gives back, dropping one generation of twenty".into(),
            unit: "MiB",
            sysgen: Some(g.state_before.saturating_sub(g.state_after) as f64 / MIB),
            sysgen_min: None,
            sysgen_max: None,
            anchor: "what only it used".into(),
            anchor_value: Some(g.only_dropped as f64 / MIB),
            ratio: share,
            target: "≥ 0.9".into(),
            met: share.map(|r| r >= 0.9),
            note: None,
        });
    }
    // Store size on disk.
    let (store, what) = match (
        sizes.sysgen_store_after_build,
        sizes.sysgen_state_after_build,
    ) {
        (Some(s), _) => (Some(s), "store"),
        (None, Some(s)) => (Some(s), "state dir"),
        _ => (None, "store"),
    };
    for (anchor, val) in [
        ("corpus (du)", Some(sizes.corpus_disk_usage)),
        ("git objects dir", sizes.git_objects_after_commit),
        ("ostree bare repo", sizes.ostree_repo_after_commit),
        ("nix store", sizes.nix_store_after_add),
    ] {
        let ratio = match (store, val) {
            (Some(s), Some(v)) if v > 0 => Some(s as f64 / v as f64),
            _ => None,
        };
        rows.push(Row {
            operation: format!("{what} size after one build"),
            unit: "MiB",
            sysgen: store.map(|s| s as f64 / MIB),
            sysgen_min: None,
            sysgen_max: None,
            anchor: anchor.into(),
            anchor_value: val.map(|v| v as f64 / MIB),
            ratio,
            target: "—".into(),
            met: None,
            note: None,
        });
    }
    rows
}

fn fmt_val(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "—".into(),
        Some(x) if unit == "s" && x < 1.0 => format!("{:.0} ms", x * 1000.0),
        Some(x) if unit == "s" => format!("{x:.2} s"),
        Some(x) => format!("{x:.1} {unit}"),
    }
}

fn fmt_spread(r: &Row) -> String {
    match (r.sysgen_min, r.sysgen_max) {
        (Some(a), Some(b)) => format!("{}..{}", fmt_val(Some(a), r.unit), fmt_val(Some(b), r.unit)),
        _ => "—".into(),
    }
}

fn fmt_met(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "—",
    }
}

fn pad_table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn human(rec: &Recorder, rows: &[Row], sizes: &Sizes, meta: &serde_json::Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nsysgen-bench: {} files, {:.1} MiB, {} runs per operation, {} CPUs, {}",
        meta["files"],
        sizes.corpus_bytes as f64 / MIB,
        meta["runs"],
        meta["cpus"],
        meta["filesystem"].as_str().unwrap_or("?")
    );
    let _ = writeln!(out, "\nMeasurements (wall time over successful runs)\n");
    let mut t = vec![vec![
        "operation".to_string(),
        "tool".into(),
        "median".into(),
        "spread".into(),
        "runs".into(),
        "user+sys".into(),
        "max RSS".into(),
        "note".into(),
    ]];
    for o in &rec.ops {
        let w = o.wall;
        let cpu = match (o.user_s, o.sys_s) {
            (Some(u), Some(s)) => fmt_val(Some(u.median + s.median), "s"),
            _ => "—".into(),
        };
        t.push(vec![
            o.label.clone(),
            o.tool.clone(),
            fmt_val(w.map(|w| w.median), "s"),
            w.map_or("—".into(), |w| {
                format!(
                    "{}..{}",
                    fmt_val(Some(w.min), "s"),
                    fmt_val(Some(w.max), "s")
                )
            }),
            w.map_or("0".into(), |w| w.n.to_string()),
            cpu,
            o.maxrss_kib
                .map_or("—".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
            o.skipped
                .as_ref()
                .map(|s| format!("skipped: {s}"))
                .or_else(|| o.error.as_ref().map(|e| format!("FAILED: {e}")))
                .unwrap_or_default(),
        ]);
    }
    out.push_str(&pad_table(&t));
    let _ = writeln!(out, "\nsysgen against the anchors\n");
    let mut t = vec![vec![
        "operation".to_string(),
        "sysgen".into(),
        "spread".into(),
        "anchor".into(),
        "anchor".into(),
        "ratio".into(),
        "target".into(),
        "met?".into(),
    ]];
    for r in rows {
        t.push(vec![
            r.operation.clone(),
            fmt_val(r.sysgen, r.unit),
            fmt_spread(r),
            r.anchor.clone(),
            fmt_val(r.anchor_value, r.unit),
            r.ratio.map_or("—".into(), |x| format!("{x:.2}")),
            r.target.clone(),
            fmt_met(r.met).into(),
        ]);
    }
    out.push_str(&pad_table(&t));
    let mb = |v: Option<u64>| v.map_or("—".into(), |v| format!("{:.1} MiB", v as f64 / MIB));
    let _ = writeln!(out, "\nSizes on disk");
    let _ = writeln!(
        out,
        "  corpus: {:.1} MiB of file data, {} on disk",
        sizes.corpus_bytes as f64 / MIB,
        mb(Some(sizes.corpus_disk_usage))
    );
    let _ = writeln!(
        out,
        "  sysgen state after one build: {} (store: {})",
        mb(sizes.sysgen_state_after_build),
        mb(sizes.sysgen_store_after_build)
    );
    let _ = writeln!(
        out,
        "  sysgen root after the first switch: {}",
        mb(sizes.sysgen_root_after_switch)
    );
    let _ = writeln!(
        out,
        "  sysgen state with 20 generations: {}, after gc: {}",
        mb(sizes.sysgen_state_20_generations),
        mb(sizes.sysgen_state_after_gc)
    );
    if let Some(g) = &sizes.gc_space {
        let _ = writeln!(
            out,
            "  one more gc of the oldest of twenty: state {} -> {}, {} freed of the {} only it used ({}; target >= 0.90)",
            mb(Some(g.state_before)),
            mb(Some(g.state_after)),
            mb(Some(g.state_before.saturating_sub(g.state_after))),
            mb(Some(g.only_dropped)),
            g.freed_share()
                .map_or("-".to_owned(), |r| format!("{r:.2}"))
        );
    }
    let _ = writeln!(
        out,
        "  git objects: {}, ostree bare repo: {}, nix store: {}",
        mb(sizes.git_objects_after_commit),
        mb(sizes.ostree_repo_after_commit),
        mb(sizes.nix_store_after_add)
    );
    out
}

pub fn markdown(rows: &[Row], meta: &serde_json::Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Corpus: {} files ({} MiB), seed {}, {} runs per operation (median, spread min..max); \
         {} CPUs, {}, kernel {}; measured with `sysgen-bench`.\n",
        meta["files"],
        meta["corpus_mib"],
        meta["seed"],
        meta["runs"],
        meta["cpus"],
        meta["filesystem"].as_str().unwrap_or("?"),
        meta["kernel"].as_str().unwrap_or("?"),
    );
    out.push_str(
        "| Operation | sysgen median | spread | anchor | anchor median | ratio | target | met? |\n",
    );
    out.push_str("|---|---:|---|---|---:|---:|---|---|\n");
    for r in rows {
        let anchor = match &r.note {
            Some(n) if r.anchor_value.is_none() || r.sysgen.is_none() => {
                format!("{} ({n})", r.anchor)
            }
            _ => r.anchor.clone(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.operation,
            fmt_val(r.sysgen, r.unit),
            fmt_spread(r),
            anchor.replace('|', "\\|"),
            fmt_val(r.anchor_value, r.unit),
            r.ratio.map_or("—".into(), |x| format!("{x:.2}")),
            r.target,
            fmt_met(r.met),
        );
    }
    out
}

fn first_line(cmd: &str, arg: &str) -> Option<String> {
    if !on_path(cmd) {
        return None;
    }
    let out = Command::new(cmd).arg(arg).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    s.lines().next().map(|l| l.trim().to_string())
}

fn filesystem_of(p: &std::path::Path) -> String {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return "?".into();
    };
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is valid for writes.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "?".into();
    }
    match st.f_type as i64 {
        0xEF53 => "ext4".into(),
        0x0102_1994 => "tmpfs".into(),
        0x9123_683E => "btrfs".into(),
        0x5846_5342 => "xfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        t => format!("fs 0x{t:x}"),
    }
}

pub fn meta(ctx: &Ctx, preset: &serde_json::Value, total_s: f64) -> serde_json::Value {
    let mut tools = serde_json::Map::new();
    for (t, a) in [
        ("sysgen", "--version"),
        ("git", "--version"),
        ("ostree", "--version"),
        ("nix-store", "--version"),
        ("b3sum", "--version"),
        ("cp", "--version"),
    ] {
        let v = if t == "sysgen" {
            Command::new(&ctx.sysgen).arg(a).output().ok().map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
        } else {
            first_line(t, a)
        };
        if let Some(v) = v {
            tools.insert(t.into(), v.into());
        }
    }
    let corpus_mib =
        (crate::measure::apparent_file_bytes(&ctx.a) as f64 / MIB * 10.0).round() / 10.0;
    serde_json::json!({
        "preset": preset,
        "files": ctx.nfiles,
        "corpus_mib": corpus_mib,
        "seed": ctx.seed,
        "runs": ctx.runs,
        "generated_corpus": ctx.generated,
        "corpus": ctx.a,
        "sysgen": ctx.sysgen,
        "work": ctx.work,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "filesystem": filesystem_of(&ctx.work),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "total_s": total_s,
        "tools": tools,
    })
}
