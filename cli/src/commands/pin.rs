//! `sysgen pin N` and `sysgen unpin N`: keep generation N from gc, or let
//! gc delete it again.

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::state::Access;
use sysgen_generations::switch::resolve;

use crate::Env;
use crate::output::Out;

#[derive(Serialize)]
struct PinOutput {
    ok: bool,
    number: u64,
    pinned: bool,
}

pub fn run(env: &Env, out: &Out, number: u64, pin: bool) -> Result<i32, Error> {
    let mut state = env.open(Access::Write)?;
    state.refuse_if_interrupted()?;
    resolve(&state, &number.to_string())?;
    state.db.set_pinned(number, pin)?;
    out.line(format!(
        "generation {number} is {}",
        if pin {
            "pinned: gc keeps it"
        } else {
            "no longer pinned"
        }
    ));
    out.doc(PinOutput {
        ok: true,
        number,
        pinned: pin,
    })?;
    Ok(0)
}
