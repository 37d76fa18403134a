//! `sysgen build CONFIG`: realize a configuration into the store and print
//! its generation id; the root is not changed.

use std::path::Path;

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::ingest::{BuildOptions, BuildOutcome, build};
use sysgen_generations::state::Access;

use crate::Env;
use crate::output::{Bar, Out, human_bytes};

#[derive(Serialize)]
struct BuildOutput<'a> {
    ok: bool,
    id: String,
    build: &'a BuildOutcome,
}

pub fn run(env: &Env, out: &Out, bar: &Bar, config: &Path) -> Result<i32, Error> {
    let spec = env.load(config)?;
    let mut state = env.open(Access::Write)?;
    state.refuse_if_interrupted()?;
    let b = build(
        &mut state,
        &spec,
        &BuildOptions {
            now: env.now,
            progress: bar,
            proxy: env.proxy.clone(),
        },
    )?;
    out.line(b.id.to_string());
    out.detail(format!(
        "{} entries, {}, {} files hashed, {} from the stat cache, {} new store objects",
        b.entries,
        human_bytes(b.bytes),
        b.files_hashed,
        b.files_cached,
        b.objects_written
    ));
    out.doc(BuildOutput {
        ok: true,
        id: b.id.to_string(),
        build: &b,
    })?;
    Ok(0)
}
