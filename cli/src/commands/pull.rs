//! `sysgen pull REMOTE REF [--switch]`: fetch the generation a signed ref
//! names into this state (only what is missing, each object checked
//! against its hash, secrets decrypted with the host's ssh key), refusing
//! unsigned, forged, untrusted and replayed refs; then switch to it.

use std::path::Path;

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::state::Access;
use sysgen_remote::local::StateTransport;
use sysgen_remote::ops::{PullOutcome, PullRequest, pull};
use sysgen_remote::secret::host_identity;

use super::push::{fault, moved_line, open_remote, remote_err};
use super::switch::{Flags, kinds, options, show};
use crate::Env;
use crate::output::{Bar, Out};
use crate::render::Names;

/// The examples `--help` shows.
pub const HELP: &str = "\
Examples:
  sysgen key trust deployer.pub        once: accept what that key signs
  sysgen pull file:///srv/gens hosts/web1 --switch
                                       fetch what the ref names (only what is missing), then switch to it
  sysgen pull https://gens.example.com hosts/web1
                                       from a web server publishing the directory; switch later

Unsigned, forged, untrusted and replayed refs are refused (exit 2); nothing changes.";

pub struct Request<'a> {
    pub remote: &'a str,
    pub ref_name: &'a str,
    pub switch: bool,
    pub identity: Option<&'a Path>,
    /// `--report`: write reports/HOST after the pull, whatever its outcome.
    pub report: bool,
}

#[derive(Serialize)]
struct PullOutput<'a> {
    ok: bool,
    remote: &'a str,
    #[serde(flatten)]
    outcome: &'a PullOutcome,
    /// The generation number switched to, with --switch.
    switched: Option<u64>,
}

pub fn run(env: &Env, out: &Out, bar: &Bar, req: &Request<'_>) -> Result<i32, Error> {
    let r = pull_and_switch(env, out, bar, req);
    if req.report {
        return super::fleet::report_after_pull(env, req.remote, req.ref_name, r);
    }
    r
}

fn pull_and_switch(env: &Env, out: &Out, bar: &Bar, req: &Request<'_>) -> Result<i32, Error> {
    let src = open_remote(req.remote, false)?;
    let state = env.open(Access::Write)?;
    state.refuse_if_interrupted()?;
    let trusted: Vec<String> = state
        .db
        .trusted_keys()?
        .into_iter()
        .map(|k| k.key)
        .collect();
    let identity = host_identity(&state, req.identity).map_err(remote_err)?;
    let mut dst = StateTransport::new(state, env.now);
    if let Some(i) = identity {
        dst = dst.with_identity(i);
    }
    let o = pull(
        src.as_ref(),
        &dst,
        &PullRequest {
            ref_name: req.ref_name,
            trusted: &trusted,
            now: env.now,
            progress: bar,
            fault: fault()?,
        },
    )
    .map_err(remote_err)?;
    out.line(format!(
        "pulled {} (version {}) from {}: generation {}: {}",
        o.ref_name,
        o.seq,
        src.describe(),
        &o.generation[..12],
        moved_line(&o.moved)
    ));
    if !req.switch {
        out.line(format!(
            "switch to it with: sysgen switch {}",
            &o.generation[..12]
        ));
    }
    let mut code = 0;
    let mut switched = None;
    if req.switch {
        // The state is opened again (and locked again) for the switch,
        // once what arrived is durable.
        dst.flush().map_err(remote_err)?;
        drop(dst);
        let mut state = env.open(Access::Write)?;
        let id = sysgen_generations::switch::resolve(&state, &o.generation)?;
        let flags = Flags {
            dry_run: false,
            force: false,
            rollback_on_failure: true,
        };
        let k = kinds(env, &flags, false);
        bar.set_names(Names::read(&state)?);
        let s = sysgen_generations::switch::switch_to(
            &mut state,
            id,
            &options(env, &k, &flags, "pull", bar),
        )?;
        switched = Some(s.number);
        // The switch's own lines for people; its JSON is summed up here.
        let lines = Out {
            json: false,
            quiet: out.json || out.quiet,
            verbose: out.verbose,
        };
        code = show(&lines, &s, &Names::read(&state)?)?;
    }
    out.doc(PullOutput {
        ok: code == 0,
        remote: req.remote,
        outcome: &o,
        switched,
    })?;
    Ok(code)
}
