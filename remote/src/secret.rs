//! Secrets on a remote: age-encrypted to the ssh ed25519 key of the one
//! host they are for, never in clear.
//!
//! A recipient is named on the remote by its id: the first 16 hex digits
//! of the BLAKE3 of its canonical `ssh-ed25519 <base64>` text, so that the
//! same secret published for two hosts is two keys
//! (`secrets/<id>/<hash>`), each readable by one host only.

use std::io::BufReader;
use std::path::Path;
use std::str::FromStr;

use sysgen_store::Hash;

use crate::Error;

/// A host's ssh public key, to encrypt to.
#[derive(Clone)]
pub struct Recipient {
    pub id: String,
    key: age::ssh::Recipient,
}

impl Recipient {
    /// From `ssh-ed25519 AAAA… [comment]`, or a file holding that line
    /// (`/etc/ssh/ssh_host_ed25519_key.pub`).
    pub fn parse(arg: &str) -> Result<Recipient, Error> {
        let text = if arg.starts_with("ssh-") {
            arg.to_owned()
        } else {
            std::fs::read_to_string(arg).map_err(|e| {
                Error::Invalid(format!(
                    "--recipient {arg}: neither an ssh public key nor a readable file: {e}"
                ))
            })?
        };
        let mut fields = text.split_whitespace();
        let (Some(kind), Some(b64)) = (fields.next(), fields.next()) else {
            return Err(Error::Invalid(format!(
                "--recipient {arg}: not an ssh public key (ssh-ed25519 AAAA…)"
            )));
        };
        if kind != "ssh-ed25519" {
            return Err(Error::Invalid(format!(
                "--recipient {arg}: a {kind} key; secrets are encrypted to a host's ssh-ed25519 key"
            )));
        }
        let canonical = format!("{kind} {b64}");
        let key = age::ssh::Recipient::from_str(&canonical).map_err(|e| {
            Error::Invalid(format!("--recipient {arg}: not a valid ssh key: {e:?}"))
        })?;
        Ok(Recipient {
            id: Hash::of(canonical.as_bytes()).to_hex()[..16].to_owned(),
            key,
        })
    }

    pub fn encrypt(&self, plain: &[u8]) -> Result<Vec<u8>, Error> {
        age::encrypt(&self.key, plain)
            .map_err(|e| Error::Invalid(format!("encrypting a secret to {}: {e}", self.id)))
    }
}

/// A host's ssh private key, to decrypt with.
pub struct Identity {
    pub path: String,
    key: age::ssh::Identity,
}

impl Identity {
    pub fn read(path: &Path) -> Result<Identity, Error> {
        let name = path.display().to_string();
        let f = std::fs::File::open(path)
            .map_err(|e| Error::Invalid(format!("{name}: cannot read the host's ssh key: {e}")))?;
        Identity::from_file(&name, f)
    }

    /// From a file already opened (the root's host key, opened through
    /// the root's handle); `name` is for messages.
    pub fn from_file(name: &str, f: std::fs::File) -> Result<Identity, Error> {
        let key = age::ssh::Identity::from_buffer(BufReader::new(f), Some(name.to_owned()))
            .map_err(|e| Error::Invalid(format!("{name}: not an ssh private key: {e}")))?;
        match key {
            age::ssh::Identity::Unencrypted(_) => Ok(Identity {
                path: name.to_owned(),
                key,
            }),
            age::ssh::Identity::Encrypted(_) => Err(Error::Invalid(format!(
                "{name}: the ssh key is passphrase-protected; a host key never is"
            ))),
            age::ssh::Identity::Unsupported(_) => Err(Error::Invalid(format!(
                "{name}: an ssh key of a kind age cannot use; give the host's ed25519 key"
            ))),
        }
    }

    /// The plain secret, or a refusal naming the key when this identity
    /// is not the one it was encrypted to.
    pub fn decrypt(&self, remote: &str, key: &str, cipher: &[u8]) -> Result<Vec<u8>, Error> {
        age::decrypt(&self.key, cipher).map_err(|e| {
            Error::refused(
                remote,
                key,
                format!(
                    "cannot decrypt this secret with {} ({e}); it is encrypted for another host's ssh key",
                    self.path
                ),
            )
        })
    }
}

/// Where a host's ssh key is on its root.
pub const HOST_KEY: &str = "/etc/ssh/ssh_host_ed25519_key";

/// The identity a state's secrets are decrypted with: `given` (the
/// command line's `--identity`), else the root's own host key if it has
/// one, opened through the root's handle (never following a symlink out
/// of the root). `None`: there is none; a secret that arrives then fails, naming
/// what to give. `sysgen pull` and `sysgen serve` both use this.
pub fn host_identity(
    state: &sysgen_generations::State,
    given: Option<&Path>,
) -> Result<Option<Identity>, Error> {
    if let Some(p) = given {
        return Identity::read(p).map(Some);
    }
    let p = sysgen_schema::EntryPath::parse(HOST_KEY)
        .map_err(|e| Error::Invalid(format!("{HOST_KEY}: {e}")))?;
    match state.root.open_file(&p) {
        Ok(f) => Identity::from_file(&state.root.display(&p), f).map(Some),
        Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // A symlink there, a directory, no permission: said, not skipped.
        Err(e) => Err(Error::Invalid(format!(
            "{}: cannot use the host's ssh key: {}; give --identity",
            state.root.display(&p),
            e.source
        ))),
    }
}
