//! `sysgen build CONFIG`: realize a configuration into the store and print
//! its generation id; the root is not changed.

use std::path::Path;

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::ingest::{BuildOutcome, build};
use sysgen_generations::state::Access;

use crate::Env;
use crate::output::{Bar, Out, human_bytes, plural};

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
    let b = build(&mut state, &spec, &env.build_options(bar))?;
    out.line(b.id.to_string());
    out.detail(format!(
        "{}, {}, {} hashed, {} from the stat cache, {}",
        plural(b.entries, "entry"),
        human_bytes(b.bytes),
        plural(b.files_hashed, "file"),
        b.files_cached,
        plural(b.objects_written, "new store object")
    ));
    out.doc(BuildOutput {
        ok: true,
        id: b.id.to_string(),
        build: &b,
    })?;
    Ok(0)
}
