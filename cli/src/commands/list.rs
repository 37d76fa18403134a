//! `sysgen list`: the generations (number, id, date and age, active and
//! pinned markers, the configuration it was built from, and how many
//! entries it adds, removes and changes against the generation before it),
//! then the datasets sysgen keeps.

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::State;
use sysgen_generations::compare::counts;
use sysgen_generations::kind::Reports;
use sysgen_generations::kinds;
use sysgen_generations::manifest::GenerationId;
use sysgen_generations::state::Access;

use crate::Env;
use crate::output::{ADDED, BOLD, CHANGED, DIM, Out, REMOVED, local, paint, relative, rfc3339};
use crate::render::config_path;

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
    /// `created_at` in RFC 3339 (UTC).
    date: String,
    active: bool,
    pinned: bool,
    /// The configuration file it was built from.
    config: Option<String>,
    /// Against the generation before it in the list (the first: against nothing).
    changes: Counts,
}

/// How many entries a transition adds, removes and changes, every kind's.
#[derive(Serialize, Default, Clone, Copy, PartialEq, Eq, Debug)]
pub struct Counts {
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
}

impl Counts {
    /// Counts the `+`, `-` and `~` lines of what `compare` says, without
    /// making them (a first generation has a line per file).
    pub fn of(
        state: &State,
        from: Option<&GenerationId>,
        to: &GenerationId,
    ) -> Result<Counts, Error> {
        let (added, removed, changed) = counts(state, from, to)?;
        Ok(Counts {
            added,
            removed,
            changed,
        })
    }

    /// `+3 -1 ~2`, each in its marker's colour.
    pub fn text(&self) -> String {
        format!(
            "{} {} {}",
            paint(ADDED, format!("+{}", self.added)),
            paint(REMOVED, format!("-{}", self.removed)),
            paint(CHANGED, format!("~{}", self.changed))
        )
    }
}

pub fn run(env: &Env, out: &Out) -> Result<i32, Error> {
    let state = env.open(Access::Read)?;
    let active = state.db.active()?.map(|a| a.number);
    let mut gens = Vec::new();
    let mut before: Option<GenerationId> = None;
    for g in state.db.generations()? {
        if g.collected_at.is_some() {
            continue;
        }
        let info = state.db.manifest(&g.id)?.map(|(_, i)| i);
        gens.push(Generation {
            number: g.number,
            id: g.id.to_string(),
            short: g.id.short(),
            created_at: g.created_at,
            date: rfc3339(g.created_at),
            active: Some(g.number) == active,
            pinned: g.pinned,
            config: info.and_then(|i| i.config),
            changes: Counts::of(&state, before.as_ref(), &g.id)?,
        });
        before = Some(g.id);
    }
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
        let mut line = format!(
            "{:>4}  {}  {} ({})  {}  {}",
            g.number,
            g.short,
            local(g.created_at),
            relative(g.created_at, env.now),
            g.changes.text(),
            paint(DIM, g.config.as_deref().map_or("-".into(), config_path)),
        );
        if !marks.is_empty() {
            line.push_str(&format!("  {}", paint(BOLD, marks)));
        }
        out.line(line);
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
