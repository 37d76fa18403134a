//! Signing keys (ed25519), signed refs and signed manifests.
//!
//! A ref is a JSON document ([`SignedRef`]): its name, a sequence number
//! that grows by one at every move, the generation it points at, the
//! secrets' recipient, its recent history, the signer's public key and
//! the signature over all of that ([`RefBody`], canonical JSON, after a
//! domain prefix). A manifest's signature covers the generation id. Key
//! files: the secret key is one line `sysgen-ed25519-secret <64 hex>`
//! (mode 0600), the public key `ed25519:<64 hex>`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sysgen_generations::GenerationId;

use crate::Error;

const SECRET_PREFIX: &str = "sysgen-ed25519-secret ";
const PUBLIC_PREFIX: &str = "ed25519:";
const REF_DOMAIN: &[u8] = b"sysgen ref v1\n";
const MANIFEST_DOMAIN: &[u8] = b"sysgen manifest v1\n";
/// How many earlier moves a ref keeps in its history.
pub const HISTORY: usize = 100;

/// A signing key, read from its file.
pub struct Key {
    signing: SigningKey,
}

impl Key {
    /// A new random key.
    pub fn generate() -> Result<Key, Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::Invalid(format!("no randomness for a new key: {e}")))?;
        Ok(Key {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// Writes the secret key to `path` (mode 0600, never over an existing
    /// file) and the public key to `path.pub`.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let name = path.display();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| Error::Invalid(format!("{name}: cannot create the key file: {e}")))?;
        writeln!(f, "{SECRET_PREFIX}{}", hex::encode(self.signing.to_bytes()))
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
        let mut pub_path = path.as_os_str().to_owned();
        pub_path.push(".pub");
        let mut p = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&pub_path)
            .map_err(|e| {
                Error::Invalid(format!(
                    "{}: cannot create the public key file: {e}",
                    Path::new(&pub_path).display()
                ))
            })?;
        writeln!(p, "{}", self.public())
            .and_then(|()| p.sync_all())
            .map_err(|e| Error::Invalid(format!("{}: {e}", Path::new(&pub_path).display())))
    }

    pub fn read(path: &Path) -> Result<Key, Error> {
        let name = path.display();
        let text = read_small(path)?;
        let hexed = text.trim().strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            Error::Invalid(format!(
                "{name}: not a sysgen signing key (made by `sysgen key generate`)"
            ))
        })?;
        let seed: [u8; 32] = hex::decode(hexed.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Invalid(format!("{name}: the key is not 64 hex digits")))?;
        Ok(Key {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// `ed25519:<hex>`.
    pub fn public(&self) -> String {
        format!(
            "{PUBLIC_PREFIX}{}",
            hex::encode(self.signing.verifying_key().to_bytes())
        )
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().to_bytes())
    }

    pub fn sign_ref(&self, body: RefBody) -> Result<SignedRef, Error> {
        let msg = ref_message(&body)?;
        Ok(SignedRef {
            key: self.public(),
            signature: hex::encode(self.signing.sign(&msg).to_bytes()),
            body,
        })
    }

    pub fn sign_manifest(&self, id: &GenerationId) -> Result<Vec<u8>, Error> {
        let doc = ManifestSignature {
            generation: id.0.to_hex(),
            key: self.public(),
            signature: hex::encode(self.signing.sign(&manifest_message(id)).to_bytes()),
        };
        serde_json::to_vec(&doc).map_err(|e| Error::Invalid(format!("encoding a signature: {e}")))
    }
}

/// A key file is small; anything over 64 KiB is not one.
fn read_small(path: &Path) -> Result<String, Error> {
    use std::io::Read;
    let name = path.display();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Error::Invalid(format!("{name}: cannot read: {e}")))?;
    let mut s = String::new();
    f.take(64 * 1024)
        .read_to_string(&mut s)
        .map_err(|e| Error::Invalid(format!("{name}: cannot read: {e}")))?;
    Ok(s)
}

/// A public key as the user gave it: `ed25519:<hex>`, or a file holding
/// one (a `.pub` that `key generate` wrote). Returns the canonical form.
pub fn parse_public(arg: &str) -> Result<String, Error> {
    let text = if arg.starts_with(PUBLIC_PREFIX) {
        arg.to_owned()
    } else {
        read_small(Path::new(arg))?
    };
    let text = text.trim();
    let bad = || {
        Error::Invalid(format!(
            "{arg}: not a sysgen public key (ed25519:<64 hex digits>, or a .pub file `sysgen key generate` wrote)"
        ))
    };
    let hexed = text.strip_prefix(PUBLIC_PREFIX).ok_or_else(bad)?;
    verifying(hexed).map_err(|_| bad())?;
    Ok(format!("{PUBLIC_PREFIX}{}", hexed.to_ascii_lowercase()))
}

fn verifying(hexed: &str) -> Result<VerifyingKey, String> {
    let b: [u8; 32] = hex::decode(hexed)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("not 64 hex digits")?;
    VerifyingKey::from_bytes(&b).map_err(|e| e.to_string())
}

/// What a ref's signature covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefBody {
    /// The ref's own name (`hosts/web1`): a signed ref copied under
    /// another name is refused.
    pub name: String,
    /// 1 at the first push, one more at every move (forward or back).
    pub seq: u64,
    /// Seconds since the epoch when it was signed.
    pub time: i64,
    /// The generation id (hex).
    pub generation: String,
    /// Whose ssh key the generation's secrets are encrypted to (the
    /// recipient id of `docs/remote.md`), if it has secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// The hash of the generation's `.deb` record (`packages/<hash>`), if
    /// it has one: signed here, so no remote can swap a package file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<String>,
    /// Earlier positions, newest first.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    pub seq: u64,
    pub time: i64,
    pub generation: String,
}

/// A ref as the remote holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRef {
    #[serde(flatten)]
    pub body: RefBody,
    pub key: String,
    pub signature: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestSignature {
    generation: String,
    key: String,
    signature: String,
}

fn ref_message(body: &RefBody) -> Result<Vec<u8>, Error> {
    let mut msg = REF_DOMAIN.to_vec();
    serde_json::to_writer(&mut msg, body)
        .map_err(|e| Error::Invalid(format!("encoding a ref: {e}")))?;
    Ok(msg)
}

fn manifest_message(id: &GenerationId) -> Vec<u8> {
    let mut msg = MANIFEST_DOMAIN.to_vec();
    msg.extend_from_slice(id.0.as_bytes());
    msg
}

impl SignedRef {
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec_pretty(self).map_err(|e| Error::Invalid(format!("encoding a ref: {e}")))
    }

    /// Parses a ref read from `remote`; one without a signature is refused.
    pub fn decode(remote: &str, key: &str, bytes: &[u8]) -> Result<SignedRef, Error> {
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::refused(remote, key, format!("not a sysgen ref: {e}")))?;
        if v.get("signature").is_none() || v.get("key").is_none() {
            return Err(Error::refused(
                remote,
                key,
                "the ref is unsigned; sysgen pulls only refs signed by a trusted key",
            ));
        }
        serde_json::from_value(v)
            .map_err(|e| Error::refused(remote, key, format!("not a sysgen ref: {e}")))
    }

    pub fn generation(&self, remote: &str, key: &str) -> Result<GenerationId, Error> {
        sysgen_store::Hash::from_hex(&self.body.generation)
            .map(GenerationId)
            .map_err(|_| Error::refused(remote, key, "the generation is not a hex id"))
    }

    /// Checks the signature, and that the signer is one of `trusted`.
    pub fn verify(&self, remote: &str, key: &str, trusted: &[String]) -> Result<(), Error> {
        check_signature(
            remote,
            key,
            &self.key,
            &self.signature,
            &ref_message(&self.body)?,
        )?;
        if !trusted.iter().any(|t| t.eq_ignore_ascii_case(&self.key)) {
            return Err(Error::refused(
                remote,
                key,
                format!(
                    "signed by {}, a key this host does not trust; if it is yours, `sysgen key trust {}`",
                    self.key, self.key
                ),
            ));
        }
        Ok(())
    }
}

/// Checks a manifest signature document read from `key`.
pub fn verify_manifest(
    remote: &str,
    key: &str,
    bytes: &[u8],
    id: &GenerationId,
    trusted: &[String],
) -> Result<(), Error> {
    let doc: ManifestSignature = serde_json::from_slice(bytes)
        .map_err(|e| Error::refused(remote, key, format!("not a manifest signature: {e}")))?;
    if doc.generation != id.0.to_hex() {
        return Err(Error::refused(
            remote,
            key,
            "the signature is for another generation",
        ));
    }
    check_signature(remote, key, &doc.key, &doc.signature, &manifest_message(id))?;
    if !trusted.iter().any(|t| t.eq_ignore_ascii_case(&doc.key)) {
        return Err(Error::refused(
            remote,
            key,
            format!(
                "the manifest is signed by {}, a key this host does not trust",
                doc.key
            ),
        ));
    }
    Ok(())
}

fn check_signature(
    remote: &str,
    key: &str,
    public: &str,
    signature: &str,
    msg: &[u8],
) -> Result<(), Error> {
    let forged = |why: &str| {
        Error::refused(
            remote,
            key,
            format!("bad signature ({why}): forged or damaged"),
        )
    };
    let hexed = public
        .strip_prefix(PUBLIC_PREFIX)
        .ok_or_else(|| forged("the key is not ed25519:<hex>"))?;
    let vk = verifying(hexed).map_err(|_| forged("the key is not a valid ed25519 key"))?;
    let sig: [u8; 64] = hex::decode(signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| forged("the signature is not 128 hex digits"))?;
    vk.verify_strict(msg, &Signature::from_bytes(&sig))
        .map_err(|_| forged("it does not verify"))
}
