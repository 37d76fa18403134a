//! One file per command. Each turns its arguments into a library call,
//! prints the human lines, and builds a typed output that `--json`
//! serializes; it returns the exit status.

pub mod adopt;
pub mod build;
pub mod completions;
pub mod confirm;
pub mod deploy;
pub mod diff;
pub mod fleet;
pub mod gc;
pub mod init;
pub mod list;
pub mod log;
pub mod man;
pub mod pin;
pub mod recover;
pub mod repair;
pub mod rollback;
pub mod saved;
pub mod schema;
pub mod show;
pub mod status;
pub mod switch;
pub mod verify;
// Remotes (issue 15).
pub mod copy;
pub mod key;
pub mod pull;
pub mod push;
pub mod serve;

use std::path::Path;

use sysgen_generations::ingest::build;
use sysgen_generations::manifest::GenerationId;
use sysgen_generations::switch::resolve;
use sysgen_generations::{Error, State};

use crate::Env;
use crate::output::{Bar, Out};

/// A switch or diff target: a configuration file (built first), or a
/// generation number, id or id prefix.
fn target_id(
    env: &Env,
    state: &mut State,
    target: &str,
    out: &Out,
    bar: &Bar,
) -> Result<GenerationId, Error> {
    let path = Path::new(target);
    if looks_like_config(path) {
        let spec = env.load(path)?;
        let b = build(state, &spec, &env.build_options(bar))?;
        out.detail(format!(
            "built {} ({}, {} hashed, {} from cache)",
            b.id.short(),
            crate::output::plural(b.entries, "entry"),
            crate::output::plural(b.files_hashed, "file"),
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
