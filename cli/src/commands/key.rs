//! `sysgen key generate|trust|list`: the ed25519 keys that sign what push
//! publishes, and the keys whose signatures pull accepts.

use std::path::Path;

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::state::Access;
use sysgen_remote::sign::{Key, parse_public};

use super::push::{default_key, remote_err};
use crate::Env;
use crate::output::Out;

/// The examples `--help` shows.
pub const HELP: &str = "\
Examples:
  sysgen key generate                  <state-dir>/signing.key and .pub, trusted here
  sysgen key trust deployer.pub        accept refs and manifests that key signs
  sysgen key list                      the trusted keys";

#[derive(Serialize)]
struct GenerateOutput {
    ok: bool,
    secret_key: String,
    public_key_file: String,
    public_key: String,
    /// The new key is trusted by this host's state.
    trusted: bool,
}

#[derive(Serialize)]
struct TrustOutput {
    ok: bool,
    key: String,
    /// False when it was trusted already.
    added: bool,
}

#[derive(Serialize)]
struct ListOutput {
    ok: bool,
    keys: Vec<KeyOutput>,
}

#[derive(Serialize)]
struct KeyOutput {
    key: String,
    comment: Option<String>,
    added_at: i64,
}

/// Writes a new key (default: `<state>/signing.key`, and `.pub`) and
/// trusts it here: a host pulls what it pushed itself.
pub fn generate(env: &Env, out: &Out, file: Option<&Path>) -> Result<i32, Error> {
    let mut state = env.open(Access::Write)?;
    let path = file.map(Path::to_owned).unwrap_or_else(|| default_key(env));
    let key = Key::generate().map_err(remote_err)?;
    key.write(&path).map_err(remote_err)?;
    state
        .db
        .trust_key(&key.public(), Some("made here by key generate"), env.now)?;
    let pub_file = format!("{}.pub", path.display());
    out.line(format!("wrote {} and {pub_file}", path.display()));
    out.line(format!("public key: {} (trusted here)", key.public()));
    out.doc(GenerateOutput {
        ok: true,
        secret_key: path.display().to_string(),
        public_key_file: pub_file,
        public_key: key.public(),
        trusted: true,
    })?;
    Ok(0)
}

pub fn trust(env: &Env, out: &Out, key: &str, comment: Option<&str>) -> Result<i32, Error> {
    let public = parse_public(key).map_err(remote_err)?;
    let mut state = env.open(Access::Write)?;
    let added = state.db.trust_key(&public, comment, env.now)?;
    out.line(if added {
        format!("trusting {public}")
    } else {
        format!("{public} was trusted already")
    });
    out.doc(TrustOutput {
        ok: true,
        key: public,
        added,
    })?;
    Ok(0)
}

pub fn list(env: &Env, out: &Out) -> Result<i32, Error> {
    let state = env.open(Access::Read)?;
    let keys = state.db.trusted_keys()?;
    if keys.is_empty() {
        out.line("no trusted keys: `sysgen key trust FILE|ed25519:HEX` adds one");
    }
    for k in &keys {
        out.line(match &k.comment {
            Some(c) => format!("{}  {c}", k.key),
            None => k.key.clone(),
        });
    }
    out.doc(ListOutput {
        ok: true,
        keys: keys
            .into_iter()
            .map(|k| KeyOutput {
                key: k.key,
                comment: k.comment,
                added_at: k.added_at,
            })
            .collect(),
    })?;
    Ok(0)
}
