//! `sysgen status`: the active generation, an interrupted switch if any,
//! a drift summary, and the datasets sysgen keeps.

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::kind::Reports;
use sysgen_generations::kinds;
use sysgen_generations::state::Access;
use sysgen_generations::verify::verify;

use crate::Env;
use crate::output::{Bar, Out, local, relative};

#[derive(Serialize)]
struct StatusOutput {
    ok: bool,
    /// What each kind keeps beyond the generations ("datasets").
    #[serde(flatten)]
    kinds: Reports,
    active: Option<Active>,
    interrupted: Option<Interrupted>,
    entries: u64,
    /// How many entries differ (`sysgen verify` lists them).
    drift: usize,
    /// The pid of the command holding the lock now, if any: with
    /// `interrupted`, the switch is still running, not interrupted.
    #[serde(skip_serializing_if = "Option::is_none")]
    running: Option<u32>,
}

#[derive(Serialize)]
struct Active {
    number: u64,
    id: String,
}

#[derive(Serialize)]
struct Interrupted {
    to: u64,
    from: Option<u64>,
    started_at: i64,
}

pub fn run(env: &Env, out: &Out, bar: &Bar) -> Result<i32, Error> {
    let state = env.open(Access::Read)?;
    let journal = state.journal()?;
    let v = verify(&state, false, &env.kinds, bar)?;
    let active = state.db.active()?;
    match &active {
        Some(a) => {
            let since = state.db.active_since()?.unwrap_or(a.created_at);
            out.line(format!(
                "active: generation {} ({}), since {} ({})",
                a.number,
                a.id.short(),
                local(since),
                relative(since, env.now)
            ))
        }
        None => out.line("active: none; `sysgen switch CONFIG` makes the first generation"),
    }
    let running = state.lock_holder()?;
    // A repair journals its plan as a switch does, to the same generation.
    let what = |j: &sysgen_generations::journal::Journal| {
        if j.how == "repair" {
            format!("a repair of generation {}", j.to_number)
        } else {
            format!("a switch to generation {}", j.to_number)
        }
    };
    match (&journal, running) {
        (Some(j), Some(pid)) => out.line(format!(
            "running: {} is under way (pid {pid} holds the lock); wait for it, or stop it with `kill {pid}` and run `sysgen recover`",
            what(j)
        )),
        (Some(j), None) => out.line(format!(
            "interrupted: {} did not finish; run `sysgen recover` (or `sysgen recover --rollback`)",
            what(j)
        )),
        (None, Some(pid)) => out.line(format!(
            "running: pid {pid} holds the lock (a build, switch, gc or recover is under way)"
        )),
        (None, None) => {}
    }
    if v.drift.is_empty() {
        out.line(format!("drift: none ({} entries match)", v.entries));
    } else {
        out.line(format!(
            "drift: {} of {} entries differ; `sysgen verify` lists them, `sysgen repair` puts them back",
            v.drift.len(),
            v.entries
        ));
    }
    let kinds = kinds::reports(&state, &env.kinds)?;
    for l in kinds.lines() {
        out.line(l);
    }
    out.doc(StatusOutput {
        ok: true,
        kinds,
        active: active.map(|a| Active {
            number: a.number,
            id: a.id.to_string(),
        }),
        interrupted: journal.map(|j| Interrupted {
            to: j.to_number,
            from: j.from.map(|f| f.0),
            started_at: j.started_at,
        }),
        entries: v.entries,
        drift: v.drift.len(),
        running,
    })?;
    Ok(0)
}
