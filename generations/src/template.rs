//! Templates (`files.<path>.template`): a file's content (inline or its
//! source) rendered at build by minijinja, in strict mode (an undefined
//! name is an error with the template's file, line and column), with:
//!
//! - the configuration's `vars`, each a name of its own (`{{ port }}`);
//! - the host facts, read from the root: `host.name` (the configuration's
//!   `host`, else the root's `/etc/hostname`), `host.release` (the root's
//!   `/etc/debian_version`), `host.codename` (`VERSION_CODENAME` of its
//!   `/etc/os-release`), `host.arch` (the architecture of its `dpkg`);
//! - `secrets.<name>`, read only when used ([`crate::secrets`]).
//!
//! The context records every name a template reads: a file that read a
//! secret becomes a secret file (0600 unless a mode without bits for
//! others is given), and the generation's `templates` section keeps, per
//! file, the template's hash and the hash of each variable and fact it
//! read (never a secret's), for `diff` to say what changed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use minijinja::value::{Enumerator, Object, Value};
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use sysgen_schema::{EntryPath, FileContent, FileSpec, HostSpec};
use sysgen_store::Hash;

use crate::secrets::Secrets;
use crate::sections::TemplateUse;
use crate::{Error, State, io_err};

/// A rendered file: its bytes, whether it is secret, its mode, and what it
/// was rendered from.
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub secret: bool,
    pub mode: u32,
    pub from: TemplateUse,
}

/// Renders the templates of one build. Host facts are read from the root
/// once, with the first template.
pub struct Renderer {
    vars: Arc<BTreeMap<String, serde_json::Value>>,
    secrets: Arc<Secrets>,
    facts: Option<Arc<BTreeMap<String, String>>>,
    host: Option<String>,
    config_dir: std::path::PathBuf,
}

impl Renderer {
    pub fn new(spec: &HostSpec, secrets: Arc<Secrets>) -> Renderer {
        Renderer {
            vars: Arc::new(
                spec.vars
                    .iter()
                    .map(|(k, v)| (k.clone(), v.value.clone()))
                    .collect(),
            ),
            secrets,
            facts: None,
            host: spec.host.clone(),
            config_dir: spec.config.parent().unwrap_or(Path::new("/")).to_owned(),
        }
    }

    /// Renders `f`, a file with `template: true`, declared at `p`.
    pub fn render(
        &mut self,
        state: &State,
        p: &EntryPath,
        f: &FileSpec,
    ) -> Result<Rendered, Error> {
        let facts = match &self.facts {
            Some(f) => f.clone(),
            None => self
                .facts
                .insert(Arc::new(facts(state, &self.host)?))
                .clone(),
        };
        let (text, source) = match &f.content {
            FileContent::Inline(s) => (s.clone(), None),
            FileContent::Source(path) => (read_template(path)?, Some(path.as_path())),
            FileContent::Url(_) => {
                return Err(Error::Internal(format!(
                    "files.{p}: a download reached the template renderer"
                )));
            }
        };
        let used = Arc::new(Mutex::new(Used::default()));
        let root = Root {
            vars: self.vars.clone(),
            facts,
            secrets: self.secrets.clone(),
            used: used.clone(),
        };
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        // Configuration files, not HTML: never escape, whatever the name.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        let name = source.map_or_else(|| format!("files.{p}"), |s| s.display().to_string());
        let out = env
            .template_from_named_str(&name, &text)
            .and_then(|t| t.render(Value::from_object(root)));
        let used = std::mem::take(&mut *used.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some(e) = used.failed {
            return Err(e);
        }
        let out = out.map_err(|e| self.located(&e, &text, source, p, f))?;

        let read_secret = !used.secrets.is_empty();
        let mode = if read_secret && !f.secret && !f.mode_given {
            0o600
        } else {
            f.mode.bits()
        };
        if read_secret && mode & 0o007 != 0 {
            return Err(Error::Invalid(format!(
                "{}: files.{p}: the template reads {} but its mode {mode:04o} lets anyone read the file; give a mode without bits for others, such as 0600 or 0640",
                f.declared_in.display(),
                secret_names(&used.secrets)
            )));
        }
        let mut vars = BTreeMap::new();
        // Only names found in `self.vars` were recorded.
        for (k, v) in self.vars.iter().filter(|(k, _)| used.vars.contains(*k)) {
            let json = serde_json::to_vec(v)
                .map_err(|e| Error::Internal(format!("encoding vars.{k}: {e}")))?;
            vars.insert(k.clone(), Hash::of(&json));
        }
        for (k, v) in &used.facts {
            vars.insert(format!("host.{k}"), Hash::of(v.as_bytes()));
        }
        Ok(Rendered {
            bytes: out.into_bytes(),
            secret: f.secret || read_secret,
            mode,
            from: TemplateUse {
                source: source.map(|s| {
                    s.strip_prefix(&self.config_dir)
                        .unwrap_or(s)
                        .display()
                        .to_string()
                }),
                text: Hash::of(text.as_bytes()),
                vars,
                secrets: used.secrets,
            },
        })
    }

    /// A render error as `file:line:column: what; what to do`, with every
    /// secret value read so far cut out of the message.
    fn located(
        &self,
        e: &minijinja::Error,
        text: &str,
        source: Option<&Path>,
        p: &EntryPath,
        f: &FileSpec,
    ) -> Error {
        let range = e.range().filter(|r| r.end <= text.len());
        let line = e.line().unwrap_or(1);
        let column = range.as_ref().map_or(1, |r| {
            let before = &text[..r.start];
            before[before.rfind('\n').map_or(0, |i| i + 1)..]
                .chars()
                .count()
                + 1
        });
        let expr = range.map(|r| text[r].trim().to_owned());
        let what = match (e.kind(), expr) {
            (ErrorKind::UndefinedError, Some(x)) => format!(
                "undefined: `{x}`; declare it in vars (or under secrets), or test it with `is defined`{}",
                if x.starts_with("host.") {
                    " (host facts: host.name, host.release, host.codename, host.arch)"
                } else {
                    ""
                }
            ),
            (kind, _) => match e.detail() {
                Some(d) => format!("{kind}: {d}"),
                None => kind.to_string(),
            },
        };
        let mut msg = match source {
            Some(s) => format!(
                "{}:{line}:{column}: {what} (template of files.{p}, declared in {})",
                s.display(),
                f.declared_in.display()
            ),
            None => format!(
                "{}: files.{p}: content line {line}, column {column}: {what}",
                f.declared_in.display()
            ),
        };
        for v in self.secrets.values_read() {
            msg = msg.replace(&v, "<secret>");
        }
        Error::Invalid(msg)
    }
}

/// "secrets.a, secrets.b".
fn secret_names(set: &BTreeSet<String>) -> String {
    let list: Vec<String> = set.iter().map(|n| format!("secrets.{n}")).collect();
    list.join(", ")
}

fn read_template(path: &Path) -> Result<String, Error> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                Error::Invalid(format!(
                    "{}: a template must be UTF-8 text; drop `template` to copy it as it is",
                    path.display()
                ))
            } else {
                io_err(path)(e)
            }
        })?;
    Ok(text)
}

/// What one template read (names of secrets only, never their values).
#[derive(Debug, Default)]
struct Used {
    vars: BTreeSet<String>,
    facts: BTreeMap<String, String>,
    secrets: BTreeSet<String>,
    /// A secret that could not be read: reported instead of the
    /// "undefined" error the render then fails with.
    failed: Option<Error>,
}

impl Used {
    fn with<R>(m: &Mutex<Used>, f: impl FnOnce(&mut Used) -> R) -> R {
        f(&mut m.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The context: every variable by name, `host`, `secrets`.
#[derive(Debug)]
struct Root {
    vars: Arc<BTreeMap<String, serde_json::Value>>,
    facts: Arc<BTreeMap<String, String>>,
    secrets: Arc<Secrets>,
    used: Arc<Mutex<Used>>,
}

impl Object for Root {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "host" => Some(Value::from_object(Facts {
                facts: self.facts.clone(),
                used: self.used.clone(),
            })),
            "secrets" => Some(Value::from_object(SecretValues {
                secrets: self.secrets.clone(),
                used: self.used.clone(),
            })),
            k => {
                let v = self.vars.get(k)?;
                Used::with(&self.used, |u| u.vars.insert(k.to_owned()));
                Some(Value::from_serialize(v))
            }
        }
    }
}

#[derive(Debug)]
struct Facts {
    facts: Arc<BTreeMap<String, String>>,
    used: Arc<Mutex<Used>>,
}

impl Object for Facts {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let k = key.as_str()?;
        let v = self.facts.get(k)?;
        Used::with(&self.used, |u| u.facts.insert(k.to_owned(), v.clone()));
        Some(Value::from(v.as_str()))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.facts.keys().map(|k| Value::from(k.as_str())).collect())
    }
}

/// `secrets`: not enumerable, so a template reads only the secrets it names.
#[derive(Debug)]
struct SecretValues {
    secrets: Arc<Secrets>,
    used: Arc<Mutex<Used>>,
}

impl Object for SecretValues {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let k = key.as_str()?;
        match self.secrets.get(k) {
            Ok(Some(v)) => {
                Used::with(&self.used, |u| u.secrets.insert(k.to_owned()));
                Some(Value::from(v))
            }
            Ok(None) => None,
            Err(e) => {
                Used::with(&self.used, |u| {
                    u.failed.get_or_insert(e);
                });
                None
            }
        }
    }
}

/// The host facts of the root (see the module's doc); a fact the root does
/// not tell is absent, so a template that uses it fails as undefined.
fn facts(state: &State, host: &Option<String>) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    let name = match host {
        Some(h) => Some(h.clone()),
        None => read_root(state, "/etc/hostname")?
            .and_then(|t| t.lines().next().map(|l| l.trim().to_owned()))
            .filter(|l| !l.is_empty()),
    };
    if let Some(n) = name {
        out.insert("name".to_owned(), n);
    }
    if let Some(v) = read_root(state, "/etc/debian_version")? {
        out.insert("release".to_owned(), v.trim().to_owned());
    }
    let os_release = match read_root(state, "/etc/os-release")? {
        Some(t) => Some(t),
        None => read_root(state, "/usr/lib/os-release")?,
    };
    if let Some(c) = os_release
        .as_deref()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("VERSION_CODENAME=")))
    {
        out.insert("codename".to_owned(), c.trim_matches('"').to_owned());
    }
    if let Some(status) = read_root(state, "/var/lib/dpkg/status")? {
        // dpkg's own architecture is the native one of the root.
        let arch = status
            .split("\n\n")
            .find(|para| para.lines().any(|l| l == "Package: dpkg"))
            .and_then(|para| para.lines().find_map(|l| l.strip_prefix("Architecture: ")));
        if let Some(a) = arch {
            out.insert("arch".to_owned(), a.trim().to_owned());
        }
    }
    Ok(out)
}

/// A text file of the root, read through its handle; `None` when absent or
/// not a regular file.
fn read_root(state: &State, path: &str) -> Result<Option<String>, Error> {
    let p = EntryPath::parse(path).map_err(|e| Error::Internal(format!("{path}: {e}")))?;
    if !matches!(state.root.inspect(&p)?, crate::rootfs::Live::File(_)) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    state
        .root
        .open_file(&p)?
        .read_to_end(&mut bytes)
        .map_err(io_err(state.root.display(&p)))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}
