//! `sysgen push GEN REMOTE [--ref NAME]`: publish a generation (only what
//! the remote lacks), signed; move a ref to it last. Also the helpers
//! `pull`, `copy` and `key` share.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::state::Access;
use sysgen_generations::switch::resolve;
use sysgen_remote::local::StateTransport;
use sysgen_remote::ops::{PushRequest, push};
use sysgen_remote::secret::Recipient;
use sysgen_remote::sign::Key;
use sysgen_remote::sync::Fault;
use sysgen_remote::{Moved, Transport};

use crate::Env;
use crate::output::{Bar, Out, human_bytes, plural};

/// The examples `--help` shows.
pub const HELP: &str = "\
Examples:
  sysgen key generate                  make the signing key push uses (<state-dir>/signing.key)
  sysgen push 7 file:///srv/gens --ref hosts/web1
                                       publish generation 7 (only what the remote lacks), then move the ref
  sysgen push 7 file:///srv/gens --ref hosts/web1 --recipient web1_host_ed25519_key.pub
                                       the same for a generation with secrets: encrypted to web1's ssh key";

pub struct Request<'a> {
    pub generation: &'a str,
    pub remote: &'a str,
    pub ref_name: Option<&'a str>,
    pub key: Option<&'a Path>,
    pub recipient: Option<&'a str>,
}

#[derive(Serialize)]
struct PushOutput<'a> {
    ok: bool,
    remote: &'a str,
    #[serde(flatten)]
    outcome: &'a sysgen_remote::ops::PushOutcome,
}

pub fn run(env: &Env, out: &Out, bar: &Bar, req: &Request<'_>) -> Result<i32, Error> {
    let key_path = req
        .key
        .map(Path::to_owned)
        .unwrap_or_else(|| default_key(env));
    let key = Key::read(&key_path).map_err(|e| {
        if req.key.is_none() {
            Error::Invalid(format!(
                "{e}; every push is signed: make a key with `sysgen key generate` or give --key FILE"
            ))
        } else {
            remote_err(e)
        }
    })?;
    let recipient = req
        .recipient
        .map(Recipient::parse)
        .transpose()
        .map_err(remote_err)?;
    // Everything given is checked before the remote is touched.
    if let Some(r) = req.ref_name {
        sysgen_remote::layout::ref_key(r).map_err(remote_err)?;
    }
    let state = env.open(Access::Read)?;
    let generation = resolve(&state, req.generation)?;
    let mut src = StateTransport::new(state, env.now);
    if let Some(r) = &recipient {
        src = src.with_recipient(r.clone());
    }
    let dst = open_remote(req.remote, true)?;
    let o = push(
        &src,
        dst.as_ref(),
        &PushRequest {
            generation,
            ref_name: req.ref_name,
            key: &key,
            recipient: recipient.as_ref(),
            now: env.now,
            progress: bar,
            fault: fault()?,
        },
    )
    .map_err(remote_err)?;
    out.line(format!(
        "pushed generation {} to {}: {}",
        generation.short(),
        dst.describe(),
        moved_line(&o.moved)
    ));
    if let (Some(r), Some(seq)) = (&o.ref_name, o.seq) {
        out.line(format!(
            "{r} -> {} (version {seq}, signed by {})",
            generation.short(),
            key.public()
        ));
    }
    out.doc(PushOutput {
        ok: true,
        remote: req.remote,
        outcome: &o,
    })?;
    Ok(0)
}

/// What a sync moved, for people.
pub fn moved_line(m: &Moved) -> String {
    let mut s = format!(
        "{} sent ({}), {} already there, {}, {}",
        plural(m.objects, "object"),
        human_bytes(m.bytes),
        m.objects_present,
        plural(m.nodes, "node"),
        plural(m.manifests, "manifest")
    );
    if m.secrets > 0 {
        s.push_str(&format!(", {} encrypted", plural(m.secrets, "secret")));
    }
    s
}

/// The signing key `key generate` writes by default, and push reads.
pub fn default_key(env: &Env) -> PathBuf {
    env.state_dir.join("signing.key")
}

/// Opens a remote, its errors as the CLI's. ssh and s3 remotes are
/// configured from the environment: `SYSGEN_SSH`, `SYSGEN_REMOTE_PROGRAM`,
/// the `AWS_*` variables and `~/.aws/`.
pub fn open_remote(url: &str, create: bool) -> Result<Box<dyn Transport>, Error> {
    let connect = sysgen_remote::Connect {
        ssh: sysgen_remote::ssh::SshOptions::from_vars(|k| std::env::var(k).ok())
            .map_err(Error::Invalid)?,
        s3: sysgen_remote::s3::S3Options {
            vars: std::env::vars()
                .filter(|(k, _)| k.starts_with("AWS_"))
                .collect(),
            home: std::env::var_os("HOME").map(PathBuf::from),
            ..Default::default()
        },
    };
    sysgen_remote::open(url, create, &connect).map_err(remote_err)
}

/// A remote's error as the CLI's: input refused exits 2, the rest 1.
pub fn remote_err(e: sysgen_remote::Error) -> Error {
    match e {
        sysgen_remote::Error::State(e) => e,
        e if e.is_invalid_input() => Error::Invalid(e.to_string()),
        e => Error::Remote(e.to_string()),
    }
}

/// The crash tests' fault point in a push or pull
/// (`SYSGEN_REMOTE_FAULT=objects:N|nodes:N|manifest:0|ref:0`).
pub fn fault() -> Result<Option<Fault>, Error> {
    match std::env::var("SYSGEN_REMOTE_FAULT") {
        Ok(v) => Fault::parse(&v).map(Some).ok_or_else(|| {
            Error::Invalid(format!(
                "SYSGEN_REMOTE_FAULT={v:?}: write objects:N, nodes:N, manifest:0 or ref:0; or unset it"
            ))
        }),
        Err(_) => Ok(None),
    }
}
