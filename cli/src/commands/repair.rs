//! `sysgen repair [--dry-run]`: puts every managed path of the active
//! generation that changed on the root back from the store, saving what is
//! there first (`sysgen saved` lists those copies), and says what it put
//! back. The generation stays the same.

use serde::Serialize;
use sysgen_generations::repair::{RepairOptions, RepairOutcome, repair};
use sysgen_generations::state::Access;
use sysgen_generations::verify::verify;
use sysgen_generations::{Drift, Error};

use crate::Env;
use crate::output::{Bar, CHANGED, Out, REMOVED, paint, plural};
use crate::render::{Names, plan_line};

#[derive(Serialize)]
struct RepairOutput<'a> {
    ok: bool,
    #[serde(flatten)]
    repair: &'a RepairOutcome,
    /// The paths whose copies were saved first (`sysgen saved` reads them).
    saved: Vec<&'a str>,
    /// Drift repair leaves: units and packages.
    left: &'a [Drift],
    steps: Vec<String>,
}

pub fn run(env: &Env, out: &Out, bar: &Bar, dry_run: bool) -> Result<i32, Error> {
    let mut state = env.open(Access::Write)?;
    bar.set_names(Names::read(&state)?);
    let r = repair(
        &mut state,
        &RepairOptions {
            dry_run,
            now: env.now,
            fault_after: env.fault_after,
            progress: bar,
            kinds: &env.kinds,
        },
    )?;
    let names = Names::read(&state)?;
    // What repair does not put back: the drift of units and packages (a
    // path's drift that is left is one repair refused, named below).
    let left: Vec<Drift> = if r.number.is_some() {
        verify(&state, false, &env.kinds, bar)?
            .drift
            .into_iter()
            .filter(|d| !d.path.starts_with('/'))
            .collect()
    } else {
        Vec::new()
    };
    let steps: Vec<String> = r.plan.steps.iter().map(ToString::to_string).collect();
    match r.number {
        None => out.line("no active generation; nothing to repair"),
        Some(n) if r.repaired.is_empty() && r.refused.is_empty() => out.line(format!(
            "{} generation {n}; no path to repair",
            if left.is_empty() {
                "ok: the root matches"
            } else {
                "the paths match"
            }
        )),
        Some(n) => {
            let verb = if dry_run {
                "would put back"
            } else {
                "put back"
            };
            for d in &r.repaired {
                out.line(format!(
                    "{} {}  (was: {})",
                    paint(CHANGED, verb),
                    d.path,
                    d.what
                ));
            }
            if dry_run {
                for s in &steps {
                    out.line(format!("  {}", plan_line(s, &names, out.verbose)));
                }
            }
            for s in &r.saved {
                out.line(if dry_run {
                    format!("would save what is at {} first", s.path)
                } else {
                    format!(
                        "saved what was at {} first; `sysgen saved` lists it",
                        s.path
                    )
                });
            }
            for d in &r.refused {
                out.line(format!(
                    "{} {}: {}; move it away by hand, then repair again",
                    paint(REMOVED, "cannot repair"),
                    d.path,
                    d.what
                ));
            }
            out.line(format!(
                "{} generation {n}: {}{}",
                if dry_run { "would repair" } else { "repaired" },
                plural(r.repaired.len(), "entry"),
                if dry_run {
                    " (nothing was changed)"
                } else {
                    ""
                }
            ));
        }
    }
    for d in &left {
        out.line(format!(
            "{} {}: {}; repair puts back paths only: fix it by hand (systemctl, apt)",
            paint(REMOVED, "not repaired:"),
            d.path,
            d.what
        ));
    }
    let ok = r.refused.is_empty() && left.is_empty();
    out.doc(RepairOutput {
        ok,
        repair: &r,
        saved: r.saved.iter().map(|s| s.path.as_str()).collect(),
        left: &left,
        steps,
    })?;
    Ok(if ok { 0 } else { 1 })
}
