//! `sysgen gc`: delete old generations (never the active or pinned ones)
//! and the store objects and datasets only they used.

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::gc::{GcOptions, GcOutcome, gc};
use sysgen_generations::state::Access;

use crate::Env;
use crate::output::{Bar, Out, generation_list, human_bytes, plural};

#[derive(Serialize)]
struct GcOutput<'a> {
    ok: bool,
    gc: &'a GcOutcome,
}

pub fn run(
    env: &Env,
    out: &Out,
    bar: &Bar,
    keep: Option<usize>,
    older_than: Option<i64>,
    dry_run: bool,
) -> Result<i32, Error> {
    let mut state = env.open(Access::Write)?;
    let g = gc(
        &mut state,
        &GcOptions {
            keep,
            older_than,
            dry_run,
            now: env.now,
            kinds: &env.kinds,
            progress: bar,
        },
    )?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    let gens = if g.generations.is_empty() {
        "no generations".to_owned()
    } else {
        generation_list(&g.generations)
    };
    // A semicolon, so the object count does not read as a generation.
    out.line(format!(
        "{verb} {gens}; {} {} ({})",
        if dry_run { "would free" } else { "freed" },
        plural(g.objects, "store object"),
        human_bytes(g.bytes_freed)
    ));
    for p in &g.packs_set_aside {
        out.line(format!(
            "moved the damaged store pack {p} into the store's damaged/ directory"
        ));
    }
    if !g.packs_set_aside.is_empty() {
        out.line(format!(
            "salvaged {} from damaged packs, put back {} from the root",
            plural(g.objects_salvaged, "object"),
            g.objects_put_back
        ));
    }
    for l in g.kinds.lines() {
        out.line(l);
    }
    out.doc(GcOutput { ok: true, gc: &g })?;
    Ok(0)
}
