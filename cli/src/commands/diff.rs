//! `sysgen diff [A [B]]`: what switching from A to B adds, removes and
//! changes. No argument: the previous generation to the active one; one
//! argument X: the active generation to X (what `sysgen switch X` would do).

use std::path::Path;

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::compare::compare;
use sysgen_generations::error::GenerationError;
use sysgen_generations::kind::Reports;
use sysgen_generations::manifest::GenerationId;
use sysgen_generations::state::Access;
use sysgen_generations::switch::resolve;

use super::{looks_like_config, target_id};
use crate::Env;
use crate::output::{Bar, Out};

#[derive(Serialize)]
struct DiffOutput<'a> {
    ok: bool,
    from: String,
    to: String,
    /// Each kind's changes under its name ("changes" for the tree).
    #[serde(flatten)]
    kinds: &'a Reports,
}

pub fn run(
    env: &Env,
    out: &Out,
    bar: &Bar,
    a: Option<&str>,
    b: Option<&str>,
) -> Result<i32, Error> {
    let needs_build = [a, b]
        .iter()
        .flatten()
        .any(|t| looks_like_config(Path::new(t)));
    let mut state = env.open(if needs_build {
        Access::Write
    } else {
        Access::Read
    })?;
    if needs_build {
        state.refuse_if_interrupted()?;
    }
    let prev = state.db.previous()?;
    let cur = state.db.active()?.map(|g| g.number);
    let mut pick =
        |t: Option<&str>, default: Option<u64>, which: &str| -> Result<GenerationId, Error> {
            match (t, default) {
                (Some(t), _) => target_id(env, &mut state, t, out, bar),
                (None, Some(n)) => resolve(&state, &n.to_string()),
                (None, None) => Err(Error::Generation(GenerationError::NoSuch(format!(
                    "there is no {which} generation to compare; name two generations"
                )))),
            }
        };
    let (ida, idb) = match (a, b) {
        (None, _) => (pick(None, prev, "previous")?, pick(None, cur, "active")?),
        (Some(a), None) => (pick(Some(a), None, "")?, pick(None, cur, "active")?),
        (Some(a), Some(b)) => (pick(Some(a), None, "")?, pick(Some(b), None, "")?),
    };
    let c = compare(&state, Some(&ida), &idb)?;
    let mut empty = true;
    for l in c.lines() {
        out.line(l);
        empty = false;
    }
    if empty {
        out.line(format!(
            "no differences between {} and {}",
            ida.short(),
            idb.short()
        ));
    }
    out.doc(DiffOutput {
        ok: true,
        from: ida.to_string(),
        to: idb.to_string(),
        kinds: &c,
    })?;
    Ok(0)
}
