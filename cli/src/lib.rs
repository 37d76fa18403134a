//! The `sysgen` binary: parses the command line, passes the clock, the
//! environment's fault point and a progress sink to the library, and turns
//! outcomes and errors into text, JSON and exit codes. Nothing below this
//! crate prints.

mod args;
mod output;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde_json::json;
use sysgen_generations::datasets::{DatasetReport, report};
use sysgen_generations::db::GenRow;
use sysgen_generations::gc::{GcOptions, gc};
use sysgen_generations::ingest::{BuildOptions, BuildOutcome, build};
use sysgen_generations::kinds::{KindStep, Options};
use sysgen_generations::manifest::{Change, Entry, GenerationId, diff};
use sysgen_generations::plan::Step;
use sysgen_generations::recover::{RecoverOptions, recover};
use sysgen_generations::services::{self, ServiceError, ServiceOptions};
use sysgen_generations::state::{Access, reserved_path};
use sysgen_generations::switch::{SwitchOptions, SwitchOutcome, resolve, switch_to};
use sysgen_generations::verify::{VerifyOutcome, verify};
use sysgen_generations::{Error, State};

use crate::args::{Cli, Command, Global};
use crate::output::{Out, utc};

/// Exit status: 0 success, 1 the operation failed or verify found drift,
/// 2 the command line or the configuration is invalid.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            return code;
        }
    };
    let out = Out {
        json: cli.global.json,
        quiet: cli.global.quiet,
        verbose: cli.global.verbose,
    };
    match run(&cli, &out) {
        Ok(code) => code,
        Err(e) => {
            let code = if e.is_invalid_input() { 2 } else { 1 };
            eprintln!("error: {e}");
            let mut doc = json!({ "ok": false, "error": e.to_string(), "exit": code });
            // A unit that failed: which, why, its log, and where the
            // automatic rollback landed.
            match &e {
                Error::Service(ServiceError::Failed {
                    failure,
                    rolled_back,
                }) => {
                    doc["failed"] = json!([failure]);
                    doc["rolled_back"] = json!(rolled_back.is_some());
                    if let Some(active) = rolled_back {
                        doc["active"] = json!(active);
                    }
                }
                Error::Service(ServiceError::RollbackFailed { failure, .. }) => {
                    doc["failed"] = json!([failure]);
                    doc["rolled_back"] = json!(false);
                }
                _ => {}
            }
            if let Err(e) = out.doc(doc) {
                eprintln!("error: {e}");
            }
            code
        }
    }
}

/// Everything a command needs from outside the library.
struct Env {
    root: PathBuf,
    state_dir: PathBuf,
    now: i64,
    fault_after: Option<u64>,
    /// What the kinds need from the host: systemd on this root (whether it
    /// runs, which systemctl), where btrfs and zfs are.
    kinds: Options,
}

impl Env {
    fn new(g: &Global) -> Result<Env, Error> {
        let state_dir = g
            .state_dir
            .clone()
            .unwrap_or_else(|| g.root.join("var/lib/sysgen"));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let fault_after = match std::env::var("SYSGEN_FAULT_AFTER_STEPS") {
            Ok(v) => Some(v.trim().parse::<u64>().map_err(|_| {
                Error::Invalid(format!("SYSGEN_FAULT_AFTER_STEPS={v:?} is not a whole number of steps; unset it or give one"))
            })?),
            Err(_) => None,
        };
        if !g.root.is_dir() {
            return Err(Error::Invalid(format!(
                "--root {}: not a directory; create it or name another",
                g.root.display()
            )));
        }
        Ok(Env {
            root: g.root.clone(),
            state_dir,
            now,
            fault_after,
            kinds: Options {
                services: ServiceOptions {
                    systemctl: PathBuf::from("systemctl"),
                    runtime: systemd_runs_on(&g.root),
                    rollback_on_failure: true,
                },
                datasets: sysgen_generations::datasets::DatasetOptions {
                    tools: sysgen_generations::datasets::Tools {
                        btrfs: find_tool(&g.btrfs),
                        zfs: find_tool(&g.zfs),
                    },
                    with_data: false,
                },
            },
        })
    }

    /// The kinds' options of a switch or rollback.
    fn kinds_for(&self, rollback_on_failure: bool, with_data: bool) -> Options {
        let mut k = self.kinds.clone();
        k.services.rollback_on_failure = rollback_on_failure;
        k.datasets.with_data = with_data;
        k
    }

    fn open(&self, access: Access) -> Result<State, Error> {
        State::open(&self.root, &self.state_dir, access)
    }

    fn load(&self, config: &Path) -> Result<sysgen_schema::HostSpec, Error> {
        let reserved = reserved_path(&self.root, &self.state_dir)
            .into_iter()
            .collect();
        Ok(sysgen_schema::load(
            config,
            &sysgen_schema::LoadOptions { reserved },
        )?)
    }
}

/// Runtime service steps (start, restart, reload, check) run only on the
/// running system: the root is `/` and systemd is PID 1 there (the test
/// `sd_booted()` uses). A chroot or image gets the offline part only.
fn systemd_runs_on(root: &Path) -> bool {
    root.canonicalize().is_ok_and(|r| r == Path::new("/"))
        && Path::new("/run/systemd/system").is_dir()
}

fn run(cli: &Cli, out: &Out) -> Result<i32, Error> {
    if let Command::Schema = cli.command {
        let schema = sysgen_schema::json_schema();
        println!(
            "{}",
            serde_json::to_string_pretty(&schema).unwrap_or_default()
        );
        return Ok(0);
    }
    let env = Env::new(&cli.global)?;
    let bar = out.progress();
    match &cli.command {
        Command::Schema => Ok(0),
        Command::Build { config } => {
            let spec = env.load(config)?;
            let mut state = env.open(Access::Write)?;
            state.refuse_if_interrupted()?;
            let b = build(
                &mut state,
                &spec,
                &BuildOptions {
                    now: env.now,
                    progress: &bar,
                },
            )?;
            show_build(out, &b)?;
            Ok(0)
        }
        Command::Switch {
            target,
            dry_run,
            force,
            no_rollback_on_failure,
        } => {
            let mut state = env.open(Access::Write)?;
            state.refuse_if_interrupted()?;
            let id = target_id(&env, &mut state, target, out, &bar)?;
            let kinds = env.kinds_for(!*no_rollback_on_failure, false);
            let o = switch_to(
                &mut state,
                id,
                &switch_opts(&env, &kinds, *force, *dry_run, "switch", &bar),
            )?;
            show_switch(out, &o)
        }
        Command::Rollback {
            to,
            with_data,
            dry_run,
            force,
            no_rollback_on_failure,
        } => {
            let mut state = env.open(Access::Write)?;
            state.refuse_if_interrupted()?;
            let n = match to {
                Some(n) => *n,
                None => state.db.previous()?.ok_or_else(|| {
                    Error::NoSuchGeneration(
                        "there is no earlier generation to roll back to; `sysgen list` shows them"
                            .into(),
                    )
                })?,
            };
            let id = resolve(&state, &n.to_string())?;
            let kinds = env.kinds_for(!*no_rollback_on_failure, *with_data);
            let opts = switch_opts(&env, &kinds, *force, *dry_run, "rollback", &bar);
            let o = switch_to(&mut state, id, &opts)?;
            show_switch(out, &o)
        }
        Command::Diff { a, b } => cmd_diff(&env, out, a.as_deref(), b.as_deref(), &bar),
        Command::List => {
            let state = env.open(Access::Read)?;
            let active = state.db.active()?.map(|a| a.number);
            let gens: Vec<GenRow> = state
                .db
                .generations()?
                .into_iter()
                .filter(|g| g.collected_at.is_none())
                .collect();
            if gens.is_empty() {
                out.line("no generations yet; `sysgen switch CONFIG` makes the first one");
            }
            for g in &gens {
                let marks = [(Some(g.number) == active, "active"), (g.pinned, "pinned")]
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, m)| *m)
                    .collect::<Vec<_>>()
                    .join(" ");
                let line = format!(
                    "{:>4}  {}  {}  {marks}",
                    g.number,
                    g.id.short(),
                    utc(g.created_at)
                );
                out.line(line.trim_end());
            }
            let datasets = report(&state, &env.kinds.datasets.tools)?;
            dataset_lines(out, &datasets);
            out.doc(json!({
                "ok": true,
                "active": active,
                "datasets": datasets,
                "generations": gens.iter().map(|g| json!({
                    "number": g.number, "id": g.id.to_string(), "created_at": g.created_at,
                    "date": utc(g.created_at), "active": Some(g.number) == active, "pinned": g.pinned,
                })).collect::<Vec<_>>(),
            }))?;
            Ok(0)
        }
        Command::Status => {
            let state = env.open(Access::Read)?;
            let journal = state.journal()?;
            let v = verify_with_units(&env, &state, false, &bar)?;
            match state.db.active()? {
                Some(a) => out.line(format!(
                    "active: generation {} ({}), since {}",
                    a.number,
                    a.id.short(),
                    utc(state.db.active_since()?.unwrap_or(a.created_at))
                )),
                None => out.line("active: none; `sysgen switch CONFIG` makes the first generation"),
            }
            if let Some(j) = &journal {
                out.line(format!(
                    "interrupted: a switch to generation {} did not finish; run `sysgen recover` (or `sysgen recover --rollback`)",
                    j.to_number
                ));
            }
            if v.drift.is_empty() {
                out.line(format!("drift: none ({} entries match)", v.entries));
            } else {
                out.line(format!(
                    "drift: {} of {} entries differ; `sysgen verify` lists them",
                    v.drift.len(),
                    v.entries
                ));
            }
            let datasets = report(&state, &env.kinds.datasets.tools)?;
            dataset_lines(out, &datasets);
            out.doc(json!({
                "ok": true,
                "datasets": datasets,
                "active": state.db.active()?.map(|a| json!({"number": a.number, "id": a.id.to_string()})),
                "interrupted": journal.map(|j| json!({"to": j.to_number, "from": j.from.map(|f| f.0), "started_at": j.started_at})),
                "entries": v.entries,
                "drift": v.drift.len(),
            }))?;
            Ok(0)
        }
        Command::Verify { store } => {
            let state = env.open(Access::Read)?;
            let v = verify_with_units(&env, &state, *store, &bar)?;
            for d in &v.drift {
                out.line(format!("drift: {}: {}", d.path, d.what));
            }
            if v.corrupt_secret_objects > 0 {
                out.line(format!(
                    "corrupt: {} objects in the secret area of the store (not named: their names are hashes of secrets)",
                    v.corrupt_secret_objects
                ));
            }
            for h in &v.corrupt_objects {
                out.line(format!("corrupt: store object {h}"));
            }
            let bad = !v.drift.is_empty()
                || !v.corrupt_objects.is_empty()
                || v.corrupt_secret_objects > 0;
            match v.active {
                None => out.line("no active generation; nothing to verify"),
                Some(n) if !bad => out.line(format!(
                    "ok: the root matches generation {n} ({} entries)",
                    v.entries
                )),
                Some(n) => out.line(format!(
                    "the root differs from generation {n} in {} of {} entries{}",
                    v.drift.len(),
                    v.entries,
                    if v.corrupt_objects.is_empty() {
                        String::new()
                    } else {
                        format!("; {} store objects are corrupt", v.corrupt_objects.len())
                    }
                )),
            }
            if *store {
                out.detail(format!("checked {} store objects", v.objects_checked));
            }
            out.doc(json!({ "ok": !bad, "verify": v }))?;
            Ok(if bad { 1 } else { 0 })
        }
        Command::Gc {
            keep,
            older_than,
            dry_run,
        } => {
            let mut state = env.open(Access::Write)?;
            let g = gc(
                &mut state,
                &GcOptions {
                    keep: *keep,
                    older_than: *older_than,
                    dry_run: *dry_run,
                    now: env.now,
                    kinds: &env.kinds,
                },
            )?;
            let verb = if *dry_run { "would delete" } else { "deleted" };
            let gens = if g.generations.is_empty() {
                "no generations".to_owned()
            } else {
                generation_list(&g.generations)
            };
            out.line(format!(
                "{verb} {gens}, {} store object{} ({})",
                g.objects,
                if g.objects == 1 { "" } else { "s" },
                human_bytes(g.bytes_freed)
            ));
            for l in g.kinds.lines() {
                out.line(l);
            }
            out.doc(json!({ "ok": true, "gc": g }))?;
            Ok(0)
        }
        Command::Pin { number } | Command::Unpin { number } => {
            let pin = matches!(cli.command, Command::Pin { .. });
            let mut state = env.open(Access::Write)?;
            state.refuse_if_interrupted()?;
            resolve(&state, &number.to_string())?;
            state.db.set_pinned(*number, pin)?;
            out.line(format!(
                "generation {number} is {}",
                if pin {
                    "pinned: gc keeps it"
                } else {
                    "no longer pinned"
                }
            ));
            out.doc(json!({ "ok": true, "number": number, "pinned": pin }))?;
            Ok(0)
        }
        Command::Recover { rollback } => {
            let mut state = env.open(Access::Write)?;
            let r = recover(
                &mut state,
                &RecoverOptions {
                    rollback: *rollback,
                    now: env.now,
                    fault_after: env.fault_after,
                    progress: &bar,
                    kinds: &env.kinds,
                },
            )?;
            for f in &r.failed {
                eprintln!("error: {f}");
            }
            if !r.interrupted {
                out.line("nothing to recover: no switch was interrupted");
            } else {
                match r.active {
                    Some(n) => out.line(format!(
                        "recovered ({}): generation {n} is active",
                        r.direction
                    )),
                    None => out.line(format!(
                        "recovered ({}): the root is back as it was before sysgen",
                        r.direction
                    )),
                }
            }
            out.doc(json!({ "ok": r.failed.is_empty(), "recover": r }))?;
            Ok(if r.failed.is_empty() { 0 } else { 1 })
        }
    }
}

/// `verify`, plus the enablement of the active generation's units.
fn verify_with_units(
    env: &Env,
    state: &State,
    store: bool,
    bar: &output::Bar,
) -> Result<VerifyOutcome, Error> {
    verify(state, store, &env.kinds, bar)
}

/// A tool given as a path is used if it exists; a bare name is looked up
/// in `PATH`. `None`: not installed (the library says so when it needs it).
fn find_tool(t: &Path) -> Option<PathBuf> {
    if t.components().count() > 1 {
        return t.is_file().then(|| t.to_owned());
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(t))
            .find(|p| p.is_file())
    })
}

/// "generation 3" or "generations 1, 2, 3".
fn generation_list(numbers: &[u64]) -> String {
    format!(
        "generation{} {}",
        if numbers.len() == 1 { "" } else { "s" },
        numbers
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// One line per dataset sysgen knows, then one per snapshot of it.
fn dataset_lines(out: &Out, datasets: &[DatasetReport]) {
    for d in datasets {
        let gens = if d.generations.is_empty() {
            "no remaining generation has it".to_owned()
        } else {
            format!("in {}", generation_list(&d.generations))
        };
        out.line(format!(
            "dataset {} ({}): {} at {}, {gens}, {} snapshot{}",
            d.path,
            d.kind,
            d.state,
            d.location,
            d.snapshots.len(),
            if d.snapshots.len() == 1 { "" } else { "s" }
        ));
        for s in &d.snapshots {
            out.line(format!(
                "  snapshot {} ({}, generation {}, {}): {}",
                s.name,
                s.why,
                s.generation,
                utc(s.taken_at),
                s.location
            ));
        }
    }
}

fn switch_opts<'a>(
    env: &Env,
    kinds: &'a Options,
    force: bool,
    dry_run: bool,
    how: &'a str,
    bar: &'a output::Bar,
) -> SwitchOptions<'a> {
    SwitchOptions {
        force,
        dry_run,
        now: env.now,
        fault_after: env.fault_after,
        how,
        progress: bar,
        kinds,
    }
}

/// A switch target: a configuration file (built first), or a generation.
fn target_id(
    env: &Env,
    state: &mut State,
    target: &str,
    out: &Out,
    bar: &output::Bar,
) -> Result<GenerationId, Error> {
    let path = Path::new(target);
    if looks_like_config(path) {
        let spec = env.load(path)?;
        let b = build(
            state,
            &spec,
            &BuildOptions {
                now: env.now,
                progress: bar,
            },
        )?;
        out.detail(format!(
            "built {} ({} entries, {} files hashed, {} from cache)",
            b.id.short(),
            b.entries,
            b.files_hashed,
            b.files_cached
        ));
        return Ok(b.id);
    }
    resolve(state, target)
}

fn looks_like_config(p: &Path) -> bool {
    p.is_file()
        || matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("json" | "toml")
        )
}

fn show_build(out: &Out, b: &BuildOutcome) -> Result<(), Error> {
    out.line(b.id.to_string());
    out.detail(format!(
        "{} entries, {}, {} files hashed, {} from the stat cache, {} new store objects",
        b.entries,
        human_bytes(b.bytes),
        b.files_hashed,
        b.files_cached,
        b.objects_written
    ));
    out.doc(json!({ "ok": true, "id": b.id.to_string(), "build": b }))
}

/// Prints a switch's outcome; returns the exit status (1 when a unit did
/// not come up and the switch was told not to roll back).
/// Each step's line, as a JSON list of strings.
struct StepLines<'a>(&'a [Step]);

impl serde::Serialize for StepLines<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|step| step.to_string()))
    }
}

fn show_switch(out: &Out, o: &SwitchOutcome) -> Result<i32, Error> {
    let name = format!("generation {} ({})", o.number, o.id.short());
    let skipped: Vec<String> = o
        .plan
        .steps
        .iter()
        .filter(|s| s.kind_step().is_some_and(|k| k.is_skipped()))
        .map(|s| s.to_string())
        .collect();
    if o.unchanged {
        out.line(format!("{name} is already active; nothing to do"));
    } else if o.dry_run {
        out.line(format!(
            "plan: switch from {} to {name}: {} steps (nothing was changed)",
            o.from
                .map_or("nothing".to_owned(), |n| format!("generation {n}")),
            o.plan.steps.len()
        ));
        for (i, s) in o.plan.steps.iter().enumerate() {
            out.line(format!("{:>5}. {s}", i + 1));
        }
    } else {
        for s in &o.plan.steps {
            out.detail(format!("  {s}"));
        }
        out.line(format!(
            "{name} is active: {} added, {} removed, {} changed ({} steps)",
            o.added, o.removed, o.changed, o.applied.steps
        ));
        // What happened to packages is news even without -v.
        if !out.verbose {
            for s in &o.plan.steps {
                if s.kind_step().is_some_and(|k| k.is_news()) {
                    out.line(s.to_string());
                }
            }
        }
        for k in &o.applied.kept {
            out.line(format!(
                "kept {k}: it still holds files sysgen does not manage"
            ));
        }
        for s in &o.saved {
            // Not even a hash of a secret leaves the store.
            let name = if s.secret {
                "a secret object".to_owned()
            } else {
                s.hash.to_string()
            };
            out.line(format!(
                "saved {} in the store as {name} ({})",
                s.path, s.why
            ));
        }
        if !skipped.is_empty() {
            out.line(format!(
                "systemd is not running on this root: skipped {} runtime step{} (`-v` lists them)",
                skipped.len(),
                if skipped.len() == 1 { "" } else { "s" }
            ));
        }
        for f in &o.applied.failed {
            eprintln!("error: {f}");
        }
    }
    let serde_json::Value::Object(rest) = json!({
        "ok": o.applied.failed.is_empty(),
        "from": o.from,
        "number": o.number,
        "id": o.id.to_string(),
        "unchanged": o.unchanged,
        "dry_run": o.dry_run,
        "added": o.added, "removed": o.removed, "changed": o.changed,
        "applied": o.applied.steps,
        "packages": o.plan.steps.iter().filter_map(|s| match s.kind_step() {
            Some(KindStep::Packages(p)) => Some(p),
            _ => None,
        }).collect::<Vec<_>>(),
        "kept": o.applied.kept,
        "skipped": skipped,
        "failed": o.applied.failed,
        "saved": o.saved.iter().map(|s| json!({
            "path": s.path,
            "hash": (!s.secret).then(|| s.hash.to_string()),
            "why": s.why,
        })).collect::<Vec<_>>(),
    }) else {
        unreachable!("json! of an object literal is an object")
    };
    // The step lines are made one at a time as they are printed: a first
    // switch has one per file.
    out.doc(output::WithField {
        rest,
        key: "steps",
        value: StepLines(&o.plan.steps),
    })?;
    Ok(if o.applied.failed.is_empty() { 0 } else { 1 })
}

fn cmd_diff(
    env: &Env,
    out: &Out,
    a: Option<&str>,
    b: Option<&str>,
    bar: &output::Bar,
) -> Result<i32, Error> {
    let needs_build = [a, b]
        .iter()
        .flatten()
        .any(|t| looks_like_config(Path::new(t)));
    let mut state = env.open(if needs_build {
        Access::Write
    } else {
        Access::Read
    })?;
    if needs_build {
        state.refuse_if_interrupted()?;
    }
    let prev = state.db.previous()?;
    let cur = state.db.active()?.map(|g| g.number);
    let mut pick =
        |t: Option<&str>, default: Option<u64>, which: &str| -> Result<GenerationId, Error> {
            match (t, default) {
                (Some(t), _) => target_id(env, &mut state, t, out, bar),
                (None, Some(n)) => resolve(&state, &n.to_string()),
                (None, None) => Err(Error::NoSuchGeneration(format!(
                    "there is no {which} generation to compare; name two generations"
                ))),
            }
        };
    let (ida, idb) = match (a, b) {
        (None, _) => (pick(None, prev, "previous")?, pick(None, cur, "active")?),
        (Some(a), None) => (pick(Some(a), None, "")?, pick(None, cur, "active")?),
        (Some(a), Some(b)) => (pick(Some(a), None, "")?, pick(Some(b), None, "")?),
    };
    let manifest_of = |id: &GenerationId| -> Result<_, Error> {
        Ok(state
            .db
            .manifest(id)?
            .ok_or_else(|| Error::NoSuchGeneration(format!("generation {id} is not in the store")))?
            .0)
    };
    let (ma, mb) = (manifest_of(&ida)?, manifest_of(&idb)?);
    let changes = state
        .db
        .reading(|db| diff(db, Some(ma.root), Some(mb.root)))?;
    for c in &changes {
        out.line(describe(c));
    }
    let package_changes = sysgen_generations::packages::diff(&ma.packages, &mb.packages);
    for c in &package_changes {
        out.line(c.to_string());
    }
    let units = services::diff(&ma.services, &mb.services);
    for u in &units {
        let sign = match u.change {
            "added" => '+',
            "removed" => '-',
            _ => '~',
        };
        out.line(format!("{sign} service {}  {}", u.unit, u.what()));
    }
    let datasets = sysgen_generations::datasets::diff(&ma.datasets, &mb.datasets);
    for d in &datasets {
        out.line(d.to_string());
    }
    if changes.is_empty() && package_changes.is_empty() && units.is_empty() && datasets.is_empty() {
        out.line(format!(
            "no differences between {} and {}",
            ida.short(),
            idb.short()
        ));
    }
    out.doc(json!({
        "ok": true,
        "from": ida.to_string(),
        "to": idb.to_string(),
        "datasets": datasets,
        "changes": changes.iter().map(|c| match c {
            Change::Added(p, e) => json!({"path": p, "change": "added", "new": shown(e)}),
            Change::Removed(p, e) => json!({"path": p, "change": "removed", "old": shown(e)}),
            Change::Changed(p, o, n) => json!({"path": p, "change": "changed", "old": shown(o), "new": shown(n), "what": what_changed(o, n)}),
        }).collect::<Vec<_>>(),
        "packages": package_changes,
        "services": units,
    }))?;
    Ok(0)
}

/// An entry for JSON output: a secret file's hash is left out, so that not
/// even a hash of its content leaves the store.
fn shown(e: &Entry) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if e.is_secret()
        && let Some(o) = v.as_object_mut()
    {
        o.remove("hash");
        o.remove("size");
    }
    v
}

fn entry_text(e: &Entry) -> String {
    match e {
        Entry::File {
            mode, secret: true, ..
        } => format!("file ({mode:04o}, secret)"),
        Entry::File { size, mode, .. } => format!("file ({mode:04o}, {size} bytes)"),
        Entry::Dir { mode: Some(m), .. } => format!("directory ({m:04o})"),
        Entry::Dir { mode: None, .. } => "directory".into(),
        Entry::Symlink { target } => format!("symlink -> {target}"),
    }
}

fn what_changed(o: &Entry, n: &Entry) -> String {
    match (o, n) {
        (
            Entry::File {
                hash: h1,
                mode: m1,
                uid: u1,
                gid: g1,
                ..
            },
            Entry::File {
                hash: h2,
                mode: m2,
                uid: u2,
                gid: g2,
                ..
            },
        ) => {
            let mut w = Vec::new();
            if h1 != h2 {
                w.push("content".to_owned());
            }
            if m1 != m2 {
                w.push(format!("mode {m1:04o} -> {m2:04o}"));
            }
            if u1 != u2 || g1 != g2 {
                w.push("owner".to_owned());
            }
            w.join(", ")
        }
        (Entry::Symlink { target: a }, Entry::Symlink { target: b }) => {
            format!("target {a} -> {b}")
        }
        (Entry::Dir { .. }, Entry::Dir { .. }) => "attributes".into(),
        _ => format!("{} -> {}", o.kind(), n.kind()),
    }
}

fn describe(c: &Change) -> String {
    match c {
        Change::Added(p, e) => format!("+ {p}  {}", entry_text(e)),
        Change::Removed(p, e) => format!("- {p}  {}", entry_text(e)),
        Change::Changed(p, o, n) => format!("~ {p}  {}", what_changed(o, n)),
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
