//! The rules of template variables, secrets and downloads, for one file
//! (step 2 of `load`). The values are merged like every other section:
//! a declaration overrides the same name declared in a file it includes
//! (nearest wins), and two siblings that disagree are an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::raw::{RawFile, RawSecret};
use crate::{Digest, Download, FileContent, SecretSource, SecretSpec, VarSpec};

/// Pattern of a variable or secret name in the schema; [`valid_name`] is
/// the authority.
pub(crate) const NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

/// Names a template sees besides the variables: the host facts and the
/// secrets, and the words minijinja reads as constants.
const RESERVED: [&str; 8] = [
    "host", "secrets", "true", "false", "none", "True", "False", "None",
];

/// A name a template can write as `{{ name }}`: an identifier, not reserved.
pub(crate) fn valid_name(n: &str) -> Result<(), String> {
    let mut b = n.bytes();
    let ok = b
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if !ok {
        return Err(format!(
            "invalid name {n:?}: use letters, digits and _, not starting with a digit"
        ));
    }
    if RESERVED.contains(&n) {
        return Err(format!(
            "{n:?} is reserved (templates see host facts as `host` and secrets as `secrets`); choose another name"
        ));
    }
    Ok(())
}

pub(super) fn vars(
    raw: &BTreeMap<String, serde_json::Value>,
    origin: &Path,
) -> Result<BTreeMap<String, VarSpec>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        valid_name(k).map_err(|e| format!("vars.{k}: {e}"))?;
        out.insert(
            k.clone(),
            VarSpec {
                value: v.clone(),
                declared_in: origin.to_owned(),
            },
        );
    }
    Ok(out)
}

pub(super) fn secrets(
    raw: &BTreeMap<String, RawSecret>,
    origin: &Path,
) -> Result<BTreeMap<String, SecretSpec>, String> {
    let mut out = BTreeMap::new();
    for (k, s) in raw {
        let label = format!("secrets.{k}");
        valid_name(k).map_err(|e| format!("{label}: {e}"))?;
        let source = match (&s.file, &s.command) {
            (Some(f), None) => {
                let p = PathBuf::from(f);
                // Relative to what? Never to the configuration: a secret
                // beside the configuration would end up in its repository.
                if !p.is_absolute() {
                    return Err(format!(
                        "{label}.file: {f:?} is relative; write an absolute path outside the configuration repository"
                    ));
                }
                SecretSource::File(p)
            }
            (None, Some(c)) if c.trim().is_empty() => {
                return Err(format!(
                    "{label}.command: the command is empty; write a command that prints the secret"
                ));
            }
            (None, Some(c)) => SecretSource::Command(c.clone()),
            (Some(_), Some(_)) => {
                return Err(format!("{label}: both file and command are set; keep one"));
            }
            (None, None) => {
                return Err(format!(
                    "{label}: neither file nor command is set; set one (a secret is never written in the configuration)"
                ));
            }
        };
        out.insert(
            k.clone(),
            SecretSpec {
                source,
                declared_in: origin.to_owned(),
            },
        );
    }
    Ok(out)
}

/// `files.<path>` with `url`: its content. `None` when the file has none of
/// `url`, `sha256` and `blake3` (content or source decide). `template` and
/// the other sources are refused beside a `url`.
pub(super) fn download(label: &str, f: &RawFile) -> Result<Option<FileContent>, String> {
    let Some(url) = &f.url else {
        return match (&f.sha256, &f.blake3) {
            (None, None) => Ok(None),
            _ => Err(format!(
                "{label}: sha256 and blake3 check a download; add a url or remove them"
            )),
        };
    };
    if f.content.is_some() || f.source.is_some() {
        return Err(format!(
            "{label}: url is set with {}; keep only one source of content",
            if f.content.is_some() {
                "content"
            } else {
                "source"
            }
        ));
    }
    if f.template {
        return Err(format!(
            "{label}: a download is not rendered as a template; remove template or url"
        ));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    if rest.is_none_or(|r| r.is_empty() || r.starts_with('/'))
        || url.contains(|c: char| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{label}: url {:?} is not an http:// or https:// URL with a host; write one such as https://example.org/file",
            url.escape_debug().to_string()
        ));
    }
    let hex = |what: &str, h: &str| -> Result<String, String> {
        if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(h.to_ascii_lowercase())
        } else {
            Err(format!(
                "{label}.{what}: {h:?} is not 64 hex digits; write the whole digest"
            ))
        }
    };
    let digest = match (&f.sha256, &f.blake3) {
        (Some(s), None) => Digest::Sha256(hex("sha256", s)?),
        (None, Some(b)) => Digest::Blake3(hex("blake3", b)?),
        (Some(_), Some(_)) => {
            return Err(format!("{label}: both sha256 and blake3 are set; keep one"));
        }
        (None, None) => {
            return Err(format!(
                "{label}: a download needs its digest; add sha256 (or blake3) with the content's hash"
            ));
        }
    };
    Ok(Some(FileContent::Url(Download {
        url: url.clone(),
        digest,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for n in ["port", "_x", "db_password2", "A"] {
            assert!(valid_name(n).is_ok(), "{n}");
        }
        for n in ["", "2x", "a-b", "a.b", "host", "secrets", "none", "é"] {
            assert!(valid_name(n).is_err(), "{n}");
        }
    }
}
