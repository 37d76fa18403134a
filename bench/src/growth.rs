//! `--growth A.json B.json …`: one table of every operation of several runs
//! of the benchmark at different sizes (10k, 100k, 1M files), with how much
//! each grew from one size to the next, against how much the file count
//! grew (issue 14: "report every operation at 10k, 100k and 1M, with the
//! growth factors", and the peak RSS of each).

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Deserialize;

use crate::Result;

#[derive(Deserialize)]
struct Doc {
    meta: Meta,
    operations: Vec<Op>,
}

#[derive(Deserialize)]
struct Meta {
    files: u64,
}

#[derive(Deserialize)]
struct Op {
    key: String,
    label: String,
    tool: String,
    wall: Option<Median>,
    maxrss_kib: Option<u64>,
}

#[derive(Deserialize)]
struct Median {
    median: f64,
}

/// The markdown table of sysgen's operations over `files`, smallest corpus first.
pub fn table(files: &[PathBuf]) -> Result<String> {
    let mut docs = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).map_err(|e| format!("{}: cannot read: {e}", f.display()))?;
        let doc: Doc = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a `sysgen-bench --json` result: {e}", f.display()))?;
        docs.push(doc);
    }
    docs.sort_by_key(|d| d.meta.files);
    let Some(first) = docs.first() else {
        return Err("--growth needs at least one JSON result".into());
    };
    let mut out = String::new();
    let mut head = String::from("| operation |");
    let mut rule = String::from("|---|");
    for (i, d) in docs.iter().enumerate() {
        let _ = write!(head, " {} files | peak RSS |", thousands(d.meta.files));
        rule.push_str("---:|---:|");
        if i > 0 {
            let prev = docs[i - 1].meta.files as f64;
            let _ = write!(head, " growth (files ×{:.0}) |", d.meta.files as f64 / prev);
            rule.push_str("---:|");
        }
    }
    let _ = writeln!(out, "{head}\n{rule}");
    // sysgen's operations in the order the benchmark runs them.
    for op in first.operations.iter().filter(|o| o.tool == "sysgen") {
        let _ = write!(out, "| {} |", op.label);
        let mut prev: Option<f64> = None;
        for (i, d) in docs.iter().enumerate() {
            let this = d
                .operations
                .iter()
                .find(|o| o.key == op.key && o.tool == "sysgen");
            let wall = this.and_then(|o| o.wall.as_ref()).map(|w| w.median);
            let rss = this.and_then(|o| o.maxrss_kib);
            let _ = write!(
                out,
                " {} | {} |",
                wall.map_or("—".into(), secs),
                rss.map_or("—".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
            );
            if i > 0 {
                let g = match (prev, wall) {
                    (Some(p), Some(w)) if p > 0.0 => format!("×{:.1}", w / p),
                    _ => "—".into(),
                };
                let _ = write!(out, " {g} |");
            }
            prev = wall;
        }
        out.push('\n');
    }
    Ok(out)
}

fn secs(s: f64) -> String {
    if s < 0.1 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn tables_two_sizes_with_their_growth() {
        let dir = std::env::temp_dir().join(format!("sgb-growth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let doc = |files: u64, wall: f64, rss: u64| {
            serde_json::json!({
                "meta": {"files": files},
                "operations": [
                    {"key": "diff", "label": "diff of generations 1% apart", "tool": "sysgen",
                     "wall": {"median": wall}, "maxrss_kib": rss},
                    {"key": "git_diff", "label": "git diff", "tool": "git",
                     "wall": {"median": 1.0}, "maxrss_kib": 1},
                ]
            })
        };
        let a = dir.join("a.json");
        let b = dir.join("b.json");
        std::fs::write(&a, doc(100_000, 0.5, 20480).to_string()).unwrap();
        std::fs::write(&b, doc(10_000, 0.05, 10240).to_string()).unwrap();
        let t = table(&[a, b]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            t,
            "| operation | 10,000 files | peak RSS | 100,000 files | peak RSS | growth (files ×10) |\n\
             |---|---:|---:|---:|---:|---:|\n\
             | diff of generations 1% apart | 50.0 ms | 10.0 MiB | 0.50 s | 20.0 MiB | ×10.0 |\n"
        );
    }
}
