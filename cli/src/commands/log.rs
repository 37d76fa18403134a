//! `sysgen log`: the history of activations, oldest first: when (local
//! time, and how long ago), how (switch, rollback, recover, recover
//! --rollback, automatic rollback), from which generation to which, and
//! how many entries that added, removed and changed.

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::manifest::GenerationId;
use sysgen_generations::state::Access;

use super::list::Counts;
use crate::Env;
use crate::output::{BOLD, Out, local, paint, relative, rfc3339};

#[derive(Serialize)]
struct LogOutput {
    ok: bool,
    activations: Vec<Entry>,
}

#[derive(Serialize)]
struct Entry {
    /// RFC 3339, UTC.
    at: String,
    how: String,
    /// `null`: from nothing (the first switch), or to nothing (the first
    /// switch undone).
    from: Option<u64>,
    to: Option<u64>,
    /// `null` when a generation at either end was deleted by gc.
    changes: Option<Counts>,
}

pub fn run(env: &Env, out: &Out) -> Result<i32, Error> {
    let state = env.open(Access::Read)?;
    let gens = state.db.generations()?;
    // A generation's id while gc has not deleted its manifest.
    let live = |n: u64| -> Option<GenerationId> {
        gens.iter()
            .find(|g| g.number == n && g.collected_at.is_none())
            .map(|g| g.id)
    };
    let mut entries = Vec::new();
    let mut from: Option<u64> = None;
    for a in state.db.activations()? {
        let to = (a.number != 0).then_some(a.number);
        let changes = match (from.map(live), to.map(live)) {
            (Some(None), _) | (_, Some(None)) => None,
            (f, Some(Some(t))) => Some(Counts::of(&state, f.flatten().as_ref(), &t)?),
            // Back to nothing: everything the generation had goes.
            (Some(Some(f)), None) => {
                let c = Counts::of(&state, None, &f)?;
                Some(Counts {
                    added: c.removed,
                    removed: c.added,
                    changed: c.changed,
                })
            }
            (None, None) => None,
        };
        let gen_name = |n: Option<u64>| n.map_or("nothing".into(), |n| format!("generation {n}"));
        // A switch that failed before it took effect and was undone: the
        // same generation stayed active.
        let what = if from == to {
            format!(
                "a switch failed and was undone; {} stayed active",
                gen_name(to)
            )
        } else {
            format!(
                "{} -> {}{}",
                gen_name(from),
                gen_name(to),
                changes.as_ref().map_or_else(
                    || "  (a generation gc deleted)".into(),
                    |c| format!("  {}", c.text())
                ),
            )
        };
        out.line(format!(
            "{} ({})  {}  {what}",
            local(a.at),
            relative(a.at, env.now),
            paint(BOLD, &a.how),
        ));
        entries.push(Entry {
            at: rfc3339(a.at),
            how: a.how,
            from,
            to,
            changes,
        });
        from = to;
    }
    if entries.is_empty() {
        out.line("no activations yet; `sysgen switch CONFIG` makes the first one");
    }
    out.doc(LogOutput {
        ok: true,
        activations: entries,
    })?;
    Ok(0)
}
