//! `sysgen serve`: the other end of an `ssh://` remote. The client runs
//! it under ssh (`ssh HOST sysgen serve --root R`) and speaks the framed
//! protocol of `remote/src/ssh_proto.rs` on its stdin and stdout, which
//! are therefore not for people: the session's summary goes to stderr
//! (which ssh carries back to the client), as a line or, with `--json`, a
//! JSON document.
//!
//! It answers from this host's own state directory, through the same
//! `StateTransport` that `sysgen pull` writes into: what arrives is checked
//! against its hash before it is stored, a manifest is recorded only once
//! its whole tree is here, and secrets pushed to this host are decrypted
//! with its ssh host key (`--identity`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::error::StateError;
use sysgen_generations::state::Access;
use sysgen_remote::local::StateTransport;
use sysgen_remote::serve::serve;

use crate::Env;
use crate::output::Out;

/// The summary of a session, on stderr.
#[derive(Serialize)]
struct ServeOutput {
    ok: bool,
    requests: u64,
    written: u64,
    bytes_in: u64,
    bytes_out: u64,
}

pub fn run(env: &Env, out: &Out, identity: Option<&Path>) -> Result<i32, Error> {
    let state = open_waiting(env)?;
    let id = sysgen_remote::secret::host_identity(&state, identity)
        .map_err(crate::commands::push::remote_err)?;
    let mut t = StateTransport::new(state, env.now);
    if let Some(id) = id {
        t = t.with_identity(id);
    }
    let served = serve(&t, std::io::stdin().lock(), std::io::stdout().lock());
    // Objects that arrived are batched in memory until something refers
    // to them; a session that ends (or breaks) writes them now, reporting
    // a failure, rather than on drop, which could not.
    let flushed = t.flush();
    let served = served.map_err(crate::commands::push::remote_err)?;
    flushed.map_err(crate::commands::push::remote_err)?;
    let doc = ServeOutput {
        ok: true,
        requests: served.requests,
        written: served.written,
        bytes_in: served.bytes_in,
        bytes_out: served.bytes_out,
    };
    if out.json {
        // stdout carried the protocol; the document goes where ssh shows it.
        let text = serde_json::to_string(&doc).map_err(|e| Error::Internal(e.to_string()))?;
        eprintln!("{text}");
    } else if out.verbose {
        eprintln!(
            "sysgen serve: {} requests, {} keys written, {} bytes in, {} bytes out",
            doc.requests, doc.written, doc.bytes_in, doc.bytes_out
        );
    }
    Ok(0)
}

/// How long serve waits for the state's lock. A client whose connection
/// dropped reconnects at once, while the session it lost may still be
/// finishing its last request on this host (until it reads the end of
/// its stdin); waiting a little lets that one end instead of refusing.
const LOCK_WAIT: Duration = Duration::from_secs(10);

fn open_waiting(env: &Env) -> Result<sysgen_generations::State, Error> {
    let until = Instant::now() + LOCK_WAIT;
    loop {
        match env.open(Access::Write) {
            Err(Error::State(StateError::Locked { .. })) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(100));
            }
            r => return r,
        }
    }
}
