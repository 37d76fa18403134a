//! `sysgen recover [--rollback]`: finish an interrupted switch, or undo it.

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::recover::{RecoverOptions, RecoverOutcome, recover};
use sysgen_generations::state::Access;

use crate::Env;
use crate::output::{Bar, Out};

#[derive(Serialize)]
struct RecoverOutput<'a> {
    ok: bool,
    recover: &'a RecoverOutcome,
}

pub fn run(env: &Env, out: &Out, bar: &Bar, rollback: bool) -> Result<i32, Error> {
    let mut state = env.open(Access::Write)?;
    bar.set_names(crate::render::Names::read(&state)?);
    let r = recover(
        &mut state,
        &RecoverOptions {
            rollback,
            now: env.now,
            fault_after: env.fault_after,
            progress: bar,
            kinds: &env.kinds,
            automatic: false,
        },
    )?;
    for f in &r.failed {
        eprintln!("error: {f}");
    }
    if !r.interrupted {
        out.line("nothing to recover: no switch was interrupted");
    } else {
        match r.active {
            Some(n) => out.line(format!(
                "recovered ({}): generation {n} is active",
                r.direction
            )),
            None => out.line(format!(
                "recovered ({}): the root is back as it was before sysgen",
                r.direction
            )),
        }
    }
    out.doc(RecoverOutput {
        ok: r.failed.is_empty(),
        recover: &r,
    })?;
    Ok(if r.failed.is_empty() { 0 } else { 1 })
}
