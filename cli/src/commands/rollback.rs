//! `sysgen rollback [--to N]`: switch to an older generation (default: the
//! one active before the current one); `--with-data` also restores
//! datasets from that generation's snapshots.

use sysgen_generations::Error;
use sysgen_generations::error::GenerationError;
use sysgen_generations::state::Access;
use sysgen_generations::switch::{resolve, switch_to};

use super::switch::{Flags, kinds, options, show};
use crate::Env;
use crate::output::{Bar, Out};

pub fn run(
    env: &Env,
    out: &Out,
    bar: &Bar,
    to: Option<u64>,
    with_data: bool,
    flags: &Flags,
) -> Result<i32, Error> {
    let mut state = env.open(Access::Write)?;
    state.refuse_if_interrupted()?;
    let n = match to {
        Some(n) => n,
        None => state.db.previous()?.ok_or_else(|| {
            Error::Generation(GenerationError::NoSuch(
                "there is no earlier generation to roll back to; `sysgen list` shows them".into(),
            ))
        })?,
    };
    let id = resolve(&state, &n.to_string())?;
    bar.set_names(crate::render::Names::read(&state)?);
    let kinds = kinds(env, flags, with_data);
    let o = switch_to(
        &mut state,
        id,
        &options(env, &kinds, flags, "rollback", bar),
    )?;
    show(out, &o, &crate::render::Names::read(&state)?)
}
