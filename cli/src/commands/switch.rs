//! `sysgen switch CONFIG|ID`: build if needed, then make the generation
//! active, applying exactly the difference. Also prints what `rollback`
//! did ([`show`]): a rollback is a switch to an older generation.

use serde::{Serialize, Serializer};
use sysgen_generations::Error;
use sysgen_generations::kind::{Failure, Reports};
use sysgen_generations::kinds::{self, KindStep, Options};
use sysgen_generations::plan::Step;
use sysgen_generations::state::Access;
use sysgen_generations::switch::{SwitchOptions, SwitchOutcome, switch_to};
use sysgen_schema::EntryPath;

use super::target_id;
use crate::Env;
use crate::output::{ADDED, Bar, CHANGED, Out, REMOVED, paint, plural, step_line};
use crate::render::{Names, fold_plan, plan_line};

/// The flags `switch` and `rollback` share.
pub struct Flags {
    pub dry_run: bool,
    pub force: bool,
    pub rollback_on_failure: bool,
}

pub fn run(
    env: &Env,
    out: &Out,
    bar: &Bar,
    target: &str,
    confirm_within: Option<i64>,
    flags: &Flags,
) -> Result<i32, Error> {
    let mut state = env.open(Access::Write)?;
    state.refuse_if_interrupted()?;
    if confirm_within.is_some() {
        // Refused before anything is built.
        super::confirm::refuse_unless_armable(&state)?;
    }
    let id = target_id(env, &mut state, target, out, bar)?;
    bar.set_names(Names::read(&state)?);
    let kinds = kinds(env, flags, false);
    // The dead-man's record is durable before the first change.
    let armed = match confirm_within {
        Some(within) if !flags.dry_run => super::confirm::arm(env, &state, id, within)?,
        _ => false,
    };
    let r = switch_to(&mut state, id, &options(env, &kinds, flags, "switch", bar));
    if armed {
        super::confirm::settle(&state, &r)?;
    }
    let o = r?;
    if armed {
        out.line(format!(
            "roll back to the previous generation unless `sysgen confirm {}` runs within {}s",
            o.id.short(),
            confirm_within.unwrap_or_default()
        ));
    }
    show(out, &o, &Names::read(&state)?)
}

/// The kinds' options of a switch or rollback: the host's, with the flags.
pub fn kinds(env: &Env, flags: &Flags, with_data: bool) -> Options {
    let mut k = env.kinds.clone();
    k.rollback_on_failure = flags.rollback_on_failure;
    k.with_data = with_data;
    k
}

/// What `switch_to` needs from the environment and the flags; `how` is
/// recorded in the activation history ("switch" or "rollback").
pub fn options<'a>(
    env: &Env,
    kinds: &'a Options,
    flags: &Flags,
    how: &'a str,
    bar: &'a Bar,
) -> SwitchOptions<'a> {
    SwitchOptions {
        force: flags.force,
        dry_run: flags.dry_run,
        now: env.now,
        fault_after: env.fault_after,
        how,
        progress: bar,
        kinds,
    }
}

#[derive(Serialize)]
struct SwitchOutput<'a> {
    ok: bool,
    from: Option<u64>,
    number: u64,
    id: String,
    unchanged: bool,
    dry_run: bool,
    added: u64,
    removed: u64,
    changed: u64,
    applied: u64,
    /// Each kind whose steps are news, under its name ("packages").
    #[serde(flatten)]
    news: &'a Reports,
    kept: &'a [String],
    /// The runtime unit steps not run: systemd does not run on this root.
    skipped: Vec<String>,
    failed: &'a [Failure],
    saved: Vec<SavedOutput<'a>>,
    steps: StepLines<'a>,
}

/// A file saved in the store before sysgen overwrote it; a secret's hash
/// is `null`, so that not even a hash of it leaves the store.
#[derive(Serialize)]
struct SavedOutput<'a> {
    path: &'a EntryPath,
    hash: Option<String>,
    why: &'a str,
}

/// Each step's line, as a JSON list of strings, made one at a time as it
/// is written: a first switch has one step per file.
struct StepLines<'a>(&'a [Step]);

impl Serialize for StepLines<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|step| step.to_string()))
    }
}

/// Prints a switch's (or rollback's) outcome; returns the exit status (1
/// when a unit did not come up and the switch was told not to roll back).
pub fn show(out: &Out, o: &SwitchOutcome, names: &Names) -> Result<i32, Error> {
    let name = format!("generation {} ({})", o.number, o.id.short());
    let steps = &o.plan.steps;
    let skipped: Vec<String> = steps
        .iter()
        .filter(|s| s.kind_step().is_some_and(KindStep::is_skipped))
        .map(|s| s.to_string())
        .collect();
    let kind_steps: Vec<&KindStep> = steps.iter().filter_map(Step::kind_step).collect();
    // Each kind whose steps are news: a line each without -v, and its
    // steps under its name in --json.
    let mut news = Reports::default();
    for k in kinds::all() {
        news.0.extend(k.news(&kind_steps)?);
    }
    if o.unchanged {
        out.line(format!("{name} is already active; nothing to do"));
    } else if o.dry_run {
        out.line(format!(
            "plan: switch from {} to {name}: {} steps (nothing was changed)",
            o.from
                .map_or("nothing".to_owned(), |n| format!("generation {n}")),
            steps.len()
        ));
        let lines: Vec<(Option<&str>, String)> = steps
            .iter()
            .map(|s| {
                let line = plan_line(&s.to_string(), names, out.verbose);
                (s.path().map(|p| p.as_str()), line)
            })
            .collect();
        for (n, line) in fold_plan(&lines, out.verbose) {
            out.line(format!("{n:>5}. {}", step_line(&line)));
        }
    } else {
        // Under -v each step was printed as it ran (the progress sink).
        out.line(format!(
            "{name} is active: {} added, {} removed, {} changed ({})",
            paint(ADDED, o.added),
            paint(REMOVED, o.removed),
            paint(CHANGED, o.changed),
            plural(o.applied.steps, "step")
        ));
        // What happened to packages is news even without -v.
        if !out.verbose {
            for l in news.lines() {
                out.line(l);
            }
        }
        for k in &o.applied.kept {
            out.line(format!(
                "kept {k}: it still holds files sysgen does not manage"
            ));
        }
        for s in &o.saved {
            // Not even a hash of a secret leaves the store; the number to
            // read the copy back with is `sysgen saved`'s.
            out.line(format!(
                "saved {} in the store ({}); `sysgen saved` lists it",
                s.path, s.why
            ));
            if out.verbose && !s.secret {
                out.line(format!("  as {}", s.hash));
            }
        }
        for k in kinds::all() {
            if let Some(note) = k.skipped_note(&kind_steps) {
                out.line(note);
            }
        }
        for f in &o.applied.failed {
            eprintln!("error: {f}");
        }
    }
    out.doc(SwitchOutput {
        ok: o.applied.failed.is_empty(),
        from: o.from,
        number: o.number,
        id: o.id.to_string(),
        unchanged: o.unchanged,
        dry_run: o.dry_run,
        added: o.added,
        removed: o.removed,
        changed: o.changed,
        applied: o.applied.steps,
        news: &news,
        kept: &o.applied.kept,
        skipped,
        failed: &o.applied.failed,
        saved: o
            .saved
            .iter()
            .map(|s| SavedOutput {
                path: &s.path,
                hash: (!s.secret).then(|| s.hash.to_string()),
                why: &s.why,
            })
            .collect(),
        steps: StepLines(steps),
    })?;
    Ok(if o.applied.failed.is_empty() { 0 } else { 1 })
}
