//! sysgen-bench: generates a deterministic corpus, times sysgen's operations on it,
//! and times the same operations of git, OSTree, Nix, b3sum and cp on the same
//! corpus in the same run. See docs/benchmark.md.

mod anchors;
mod corpus;
mod growth;
mod measure;
mod ops;
mod prng;
mod record;
mod reflink;
mod report;
mod users_path;

use clap::{Parser, ValueEnum};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[derive(Clone, Copy, Debug, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Preset {
    /// 10,000 files, 5 runs per operation
    Small,
    /// 100,000 files (about 1 GiB), 3 runs per operation
    Large,
    /// 1,000,000 files (about 10 GiB), 1 run per operation. Implies
    /// --reclaim; needs about 50 GiB free in the work directory.
    Huge,
}

/// Names accepted by --skip.
const SKIPPABLE: &[&str] = &[
    "build-empty",
    "build-unchanged",
    "diff",
    "switch-first",
    "switch-1pct",
    "switch-active",
    "gc",
    "verify",
    "switch-config",
    "reflink",
    "sysgen",
    "anchors",
    "b3sum",
    "cp",
    "git",
    "ostree",
    "nix",
    "rsync",
];

#[derive(Parser, Debug)]
#[command(
    name = "sysgen-bench",
    about = "Benchmark sysgen against git, OSTree, Nix, cp and b3sum on a deterministic corpus"
)]
struct Args {
    /// Corpus size preset.
    #[arg(long, value_enum, default_value = "small")]
    preset: Preset,
    /// Number of regular files in the corpus (overrides the preset's).
    #[arg(long)]
    files: Option<usize>,
    /// Runs per operation (default: 5 for small, 3 for large).
    #[arg(long)]
    runs: Option<usize>,
    /// Corpus seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The sysgen binary (default: `sysgen` next to this executable).
    #[arg(long)]
    sysgen: Option<PathBuf>,
    /// Work directory (default: a fresh one under /var/tmp, removed at the end).
    /// A given work directory is kept, and its corpus reused when it matches.
    #[arg(long)]
    work: Option<PathBuf>,
    /// Keep the default work directory at the end.
    #[arg(long)]
    keep_work: bool,
    /// Delete each operation's trees as soon as it is measured (and sync),
    /// instead of moving them aside until the end. The default for the huge
    /// preset, whose moved-aside trees would need about 250 GiB: it needs
    /// about 50 GiB instead. The price: ext4 creates files more slowly for a
    /// while after a mass delete, which can slow the operation that follows.
    #[arg(long)]
    reclaim: bool,
    /// Use this tree instead of the generated corpus (its next generation is a
    /// mutated copy).
    #[arg(long)]
    tree: Option<PathBuf>,
    /// Skip operations, comma-separated: build-empty, build-unchanged, diff,
    /// switch-first, switch-1pct, switch-active, gc, verify, switch-config,
    /// reflink, sysgen (all of those),
    /// anchors (all of these:) b3sum, cp, git, ostree, nix.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Write all measurements as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a markdown table (for docs/performance.md) to FILE.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Print one markdown table of sysgen's operations from several `--json`
    /// results (say 10k, 100k and 1M files): median time and peak RSS at each
    /// size, and the growth from one size to the next; then stop.
    #[arg(long, value_name = "JSON", num_args = 1..)]
    growth: Vec<PathBuf>,
    /// Only generate the corpus and its next generation, print their statistics, and stop.
    #[arg(long)]
    generate_only: bool,
}

/// Paths and parameters shared by all operations.
pub struct Ctx {
    pub sysgen: PathBuf,
    pub work: PathBuf,
    /// Generation A (the corpus) and B (A mutated by 1%).
    pub a: PathBuf,
    pub b: PathBuf,
    pub cfg_a: PathBuf,
    pub cfg_b: PathBuf,
    pub nfiles: usize,
    pub seed: u64,
    pub runs: usize,
    /// True when A is the generated corpus (false with --tree).
    pub generated: bool,
    skip: BTreeSet<String>,
    /// Delete measured trees at once (`--reclaim`) instead of moving them aside.
    reclaim: bool,
    trash_seq: std::cell::Cell<usize>,
    setup_seq: std::cell::Cell<usize>,
}

/// Where sysgen's tree is declared on the root.
pub const TREE_PATH: &str = "/srv/corpus";

impl Ctx {
    pub fn skipped(&self, name: &str) -> bool {
        self.skip.contains(name)
    }

    /// A fresh directory under the work dir (moved to the trash first if present).
    pub fn fresh_dir(&self, rel: &str) -> Result<PathBuf> {
        let p = self.work.join(rel);
        if p.exists() {
            self.trash(&p)?;
        }
        fs::create_dir_all(&p)?;
        Ok(p)
    }

    /// Move a tree aside instead of deleting it: on ext4 without a journal, file
    /// creation is several times slower for minutes after a mass delete.
    /// With `--reclaim` it is deleted at once, as the disk may not hold it.
    pub fn trash(&self, p: &Path) -> Result<()> {
        if self.reclaim {
            return self.delete_now(p);
        }
        let t = self.work.join("trash");
        fs::create_dir_all(&t)?;
        let n = self.trash_seq.get() + 1;
        self.trash_seq.set(n);
        let name = p
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        fs::rename(p, t.join(format!("{}-{n}-{name}", std::process::id())))?;
        Ok(())
    }

    /// Trees no later operation needs (already measured, sizes taken):
    /// deleted now with `--reclaim`, otherwise left until the end.
    pub fn release(&self, rels: &[&str]) -> Result<()> {
        if !self.reclaim {
            return Ok(());
        }
        for rel in rels {
            let p = self.work.join(rel);
            if p.exists() {
                self.delete_now(&p)?;
            }
        }
        Ok(())
    }

    /// Delete a tree and write the deletion out, so that its writeback
    /// does not land inside the next measurement.
    fn delete_now(&self, p: &Path) -> Result<()> {
        eprintln!("[reclaim] deleting {} ...", p.display());
        fs::remove_dir_all(p)?;
        measure::sync();
        Ok(())
    }

    /// Run a setup command (untimed, output logged); an error if it fails.
    pub fn untimed(&self, name: &str, cmd: Command) -> Result<measure::Run> {
        let what = record::describe(&cmd);
        let n = self.setup_seq.get() + 1;
        self.setup_seq.set(n);
        let base = self.work.join("logs").join(format!("setup-{n:04}-{name}"));
        let r = measure::run(cmd, &base)?;
        if !r.ok() {
            return Err(format!("`{what}` exited {}: {}", r.status, r.stderr_tail()).into());
        }
        Ok(r)
    }

    /// `sysgen --root R --state-dir S --json ARGS…`
    pub fn sysgen(&self, root: &Path, state: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(&self.sysgen);
        c.arg("--root")
            .arg(root)
            .arg("--state-dir")
            .arg(state)
            .arg("--json")
            .args(args);
        c
    }
}

pub fn write_config(path: &Path, source: &Path) -> Result<()> {
    let mut trees = serde_json::Map::new();
    trees.insert(
        TREE_PATH.into(),
        serde_json::json!({ "source": source.to_string_lossy() }),
    );
    let cfg = serde_json::json!({ "sysgen": 1, "trees": trees });
    fs::write(path, serde_json::to_string_pretty(&cfg)? + "\n")?;
    Ok(())
}

/// `cp -a SRC DST` (untimed setup).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let st = Command::new("cp").arg("-a").arg(src).arg(dst).status()?;
    if !st.success() {
        return Err(format!("cp -a {} {} failed", src.display(), dst.display()).into());
    }
    Ok(())
}

/// Is `tool` an executable on PATH?
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(d.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

fn default_sysgen() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().unwrap_or(Path::new(".")).join("sysgen"))
}

/// Prepare the work directory: keep a matching corpus, move everything else aside.
fn prepare_work(work: &Path, params: &serde_json::Value) -> Result<bool> {
    fs::create_dir_all(work)?;
    let marker = work.join("corpus").join("params.json");
    let reuse = fs::read_to_string(&marker)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .is_some_and(|v| &v == params);
    let trash = work.join("trash");
    fs::create_dir_all(&trash)?;
    for e in fs::read_dir(work)? {
        let e = e?;
        let name = e.file_name();
        if name == "trash" || (reuse && name == "corpus") {
            continue;
        }
        fs::rename(
            e.path(),
            trash.join(format!(
                "old-{}-{}",
                std::process::id(),
                name.to_string_lossy()
            )),
        )?;
    }
    Ok(reuse)
}

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == measure::RUNNER_ARG) {
        if let Err(e) = measure::child_main(&argv[2..]) {
            eprintln!("sysgen-bench {}: {e}", measure::RUNNER_ARG);
            std::process::exit(1);
        }
        return;
    }
    let args = Args::parse();
    if let Err(e) = real_main(args) {
        eprintln!("sysgen-bench: {e}");
        std::process::exit(1);
    }
}

fn real_main(args: Args) -> Result<()> {
    if !args.growth.is_empty() {
        print!("{}", growth::table(&args.growth)?);
        return Ok(());
    }
    let mut skip: BTreeSet<String> = BTreeSet::new();
    for s in &args.skip {
        if !SKIPPABLE.contains(&s.as_str()) {
            return Err(format!("unknown --skip {s:?}; known: {}", SKIPPABLE.join(", ")).into());
        }
        skip.insert(s.clone());
    }
    if skip.contains("sysgen") {
        skip.extend(SKIPPABLE[..10].iter().map(|s| s.to_string()));
    }
    if skip.contains("anchors") {
        skip.extend(SKIPPABLE[12..].iter().map(|s| s.to_string()));
    }
    let (preset_files, preset_runs) = match args.preset {
        Preset::Small => (10_000, 5),
        Preset::Large => (100_000, 3),
        Preset::Huge => (1_000_000, 1),
    };
    let runs = args.runs.unwrap_or(preset_runs).max(1);
    let sysgen = match &args.sysgen {
        Some(p) => p.clone(),
        None => default_sysgen()?,
    };
    if !args.generate_only && !sysgen.is_file() {
        return Err(format!(
            "no sysgen binary at {}: build it (cargo build --release -p sysgen) or pass --sysgen PATH",
            sysgen.display()
        )
        .into());
    }
    let sysgen = fs::canonicalize(&sysgen).unwrap_or(sysgen);
    let default_work = args.work.is_none();
    let work = match &args.work {
        Some(w) => w.clone(),
        None => PathBuf::from(format!(
            "/var/tmp/sysgen-bench-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs()
        )),
    };
    fs::create_dir_all(&work)?;
    let work = fs::canonicalize(&work)?;
    let tree = match &args.tree {
        Some(t) => Some(fs::canonicalize(t)?),
        None => None,
    };
    let nfiles_req = args.files.unwrap_or(preset_files);
    let params = serde_json::json!({
        "files": nfiles_req, "seed": args.seed, "tree": tree, "generator": 1,
    });
    let reuse = prepare_work(&work, &params)?;
    for d in ["logs", "configs", "sg", "anchors"] {
        fs::create_dir_all(work.join(d))?;
    }
    eprintln!("work directory: {}", work.display());

    // The corpus: A, and B = A with 1% of the files changed, 0.5% added, 0.5% removed.
    let cdir = work.join("corpus");
    let a = tree.clone().unwrap_or_else(|| cdir.join("A"));
    let b = cdir.join("B");
    let mut corpus_info = serde_json::Map::new();
    if reuse {
        eprintln!("reusing the corpus in {}", cdir.display());
        if let Ok(s) = fs::read_to_string(cdir.join("stats.json")) {
            corpus_info = serde_json::from_str(&s)?;
        }
    } else {
        fs::create_dir_all(&cdir)?;
        if tree.is_none() {
            eprintln!(
                "[setup] generating {nfiles_req} files (seed {}) ...",
                args.seed
            );
            let t0 = Instant::now();
            let st = corpus::generate(nfiles_req, args.seed, &a)?;
            let secs = t0.elapsed().as_secs_f64();
            eprintln!(
                "[setup] generated {} files, {} symlinks, {} dirs, {:.1} MiB, {} duplicates in {secs:.1} s",
                st.files,
                st.symlinks,
                st.dirs,
                st.bytes as f64 / 1048576.0,
                st.duplicates
            );
            corpus_info.insert("generated".into(), serde_json::to_value(&st)?);
            corpus_info.insert("generate_s".into(), secs.into());
        }
        let nfiles = corpus::list_tree(&a)?.0.len();
        eprintln!("[setup] next generation: copy and mutate 1% ...");
        let t0 = Instant::now();
        copy_tree(&a, &b)?;
        let ms = corpus::mutate(
            &b,
            corpus::MutationSpec::per_mille(nfiles, 10),
            args.seed,
            1,
        )?;
        eprintln!(
            "[setup] B: modified {}, added {}, deleted {} ({:.1} s)",
            ms.modified,
            ms.added,
            ms.deleted,
            t0.elapsed().as_secs_f64()
        );
        corpus_info.insert("mutation_1pct".into(), serde_json::to_value(&ms)?);
        corpus_info.insert("files".into(), nfiles.into());
        fs::write(
            cdir.join("stats.json"),
            serde_json::to_string_pretty(&corpus_info)?,
        )?;
        fs::write(cdir.join("params.json"), serde_json::to_string(&params)?)?;
    }
    let nfiles = corpus_info
        .get("files")
        .and_then(|v| v.as_u64())
        .map(|v| v as usize)
        .unwrap_or(nfiles_req);
    let corpus_bytes = measure::apparent_file_bytes(&a);
    let corpus_du = measure::disk_usage(&a);
    corpus_info.insert("bytes".into(), corpus_bytes.into());
    corpus_info.insert("disk_usage".into(), corpus_du.into());
    corpus_info.insert("path_a".into(), a.to_string_lossy().into_owned().into());
    corpus_info.insert("path_b".into(), b.to_string_lossy().into_owned().into());
    if args.generate_only {
        corpus_info.insert("digest_a".into(), corpus::tree_digest(&a)?.into());
        corpus_info.insert("digest_b".into(), corpus::tree_digest(&b)?.into());
        println!("{}", serde_json::to_string_pretty(&corpus_info)?);
        return Ok(());
    }

    let cfg_a = work.join("configs/A.json");
    let cfg_b = work.join("configs/B.json");
    write_config(&cfg_a, &a)?;
    write_config(&cfg_b, &b)?;
    let ctx = Ctx {
        sysgen,
        work: work.clone(),
        a,
        b,
        cfg_a,
        cfg_b,
        nfiles,
        seed: args.seed,
        runs,
        generated: tree.is_none(),
        skip,
        reclaim: args.reclaim || matches!(args.preset, Preset::Huge),
        trash_seq: std::cell::Cell::new(0),
        setup_seq: std::cell::Cell::new(0),
    };
    let mut rec = record::Recorder::new(work.join("logs"));
    let mut sizes = report::Sizes {
        corpus_bytes,
        corpus_disk_usage: corpus_du,
        ..Default::default()
    };
    let t0 = Instant::now();
    ops::run_all(&ctx, &mut rec, &mut sizes);
    users_path::run(&ctx, &mut rec);
    anchors::run_all(&ctx, &mut rec, &mut sizes);
    sizes.reflink = reflink::run(&ctx, &mut rec, corpus_du);
    let total_s = t0.elapsed().as_secs_f64();

    let meta = report::meta(&ctx, &serde_json::to_value(args.preset)?, total_s);
    let rows = report::comparisons(&rec, &sizes, ctx.nfiles);
    print!("{}", report::human(&rec, &rows, &sizes, &meta));
    if let Some(p) = &args.json {
        let doc = serde_json::json!({
            "meta": meta,
            "corpus": corpus_info,
            "sizes": sizes,
            "operations": rec.ops,
            "comparisons": rows,
        });
        fs::write(p, serde_json::to_string_pretty(&doc)? + "\n")?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &args.markdown {
        fs::write(p, report::markdown(&rows, &meta))?;
        eprintln!("wrote {}", p.display());
    }

    eprintln!("cleaning up ...");
    let _ = fs::remove_dir_all(work.join("trash"));
    if default_work && !args.keep_work {
        fs::remove_dir_all(&work)?;
    } else {
        eprintln!("kept {}", work.display());
    }
    Ok(())
}
