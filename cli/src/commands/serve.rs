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

use serde::Serialize;
use sysgen_generations::Error;
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
    let state = env.open(Access::Write)?;
    let id = crate::commands::pull::host_identity(&state, identity)?;
    let mut t = StateTransport::new(state, env.now);
    if let Some(id) = id {
        t = t.with_identity(id);
    }
    let served = serve(&t, std::io::stdin().lock(), std::io::stdout().lock())
        .map_err(crate::commands::push::remote_err)?;
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
