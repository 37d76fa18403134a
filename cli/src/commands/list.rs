//! `sysgen list`: the generations (number, id, date, active and pinned
//! markers), then the datasets sysgen keeps.

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::kind::Reports;
use sysgen_generations::kinds;
use sysgen_generations::state::Access;

use crate::Env;
use crate::output::{Out, utc};

#[derive(Serialize)]
struct ListOutput {
    ok: bool,
    active: Option<u64>,
    /// What each kind keeps beyond the generations ("datasets").
    #[serde(flatten)]
    kinds: Reports,
    generations: Vec<Generation>,
}

#[derive(Serialize)]
struct Generation {
    number: u64,
    id: String,
    /// The id as people see it.
    #[serde(skip)]
    short: String,
    created_at: i64,
    date: String,
    active: bool,
    pinned: bool,
}

pub fn run(env: &Env, out: &Out) -> Result<i32, Error> {
    let state = env.open(Access::Read)?;
    let active = state.db.active()?.map(|a| a.number);
    let gens: Vec<Generation> = state
        .db
        .generations()?
        .into_iter()
        .filter(|g| g.collected_at.is_none())
        .map(|g| Generation {
            number: g.number,
            id: g.id.to_string(),
            short: g.id.short(),
            created_at: g.created_at,
            date: utc(g.created_at),
            active: Some(g.number) == active,
            pinned: g.pinned,
        })
        .collect();
    if gens.is_empty() {
        out.line("no generations yet; `sysgen switch CONFIG` makes the first one");
    }
    for g in &gens {
        let marks = [(g.active, "active"), (g.pinned, "pinned")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, m)| *m)
            .collect::<Vec<_>>()
            .join(" ");
        let line = format!("{:>4}  {}  {}  {marks}", g.number, g.short, g.date);
        out.line(line.trim_end());
    }
    let kinds = kinds::reports(&state, &env.kinds)?;
    for l in kinds.lines() {
        out.line(l);
    }
    out.doc(ListOutput {
        ok: true,
        active,
        kinds,
        generations: gens,
    })?;
    Ok(0)
}
