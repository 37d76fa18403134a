//! Secrets (`secrets.<name>` of the configuration): values read at build
//! from a file outside the configuration repository, or from a command's
//! standard output, and never from the configuration itself. Read only
//! when a template uses them, each once per build.
//!
//! A file must be a regular file owned by the user sysgen runs as, with no
//! group or other permission bits (0600 or 0400): a secret anyone else can
//! read or change is refused, as ssh refuses such a key. It must lie
//! outside the repository of the configuration (the nearest directory
//! above the top-level configuration file that holds `.git`, or else that
//! file's directory), so that a secret never gets committed beside it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sysgen_schema::{HostSpec, SecretSource, SecretSpec};

use crate::Error;

/// Reads the secrets of one configuration, each at most once.
pub struct Secrets {
    specs: BTreeMap<String, SecretSpec>,
    /// The configuration repository: no secret file may lie in it.
    repo: PathBuf,
    read: Mutex<BTreeMap<String, String>>,
}

/// Names only: a value must never reach a message or a log.
impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("names", &self.specs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Secrets {
    pub fn new(spec: &HostSpec) -> Secrets {
        Secrets {
            specs: spec.secrets.clone(),
            repo: repository_of(&spec.config),
            read: Mutex::new(BTreeMap::new()),
        }
    }

    /// The value of secret `name`; `Ok(None)` when no such secret is declared.
    pub fn get(&self, name: &str) -> Result<Option<String>, Error> {
        let Some(spec) = self.specs.get(name) else {
            return Ok(None);
        };
        // A poisoned lock held only finished inserts: still consistent.
        let mut read = self
            .read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(v) = read.get(name) {
            return Ok(Some(v.clone()));
        }
        let what = format!("{}: secrets.{name}", spec.declared_in.display());
        let mut value = match &spec.source {
            SecretSource::File(path) => read_file(&what, path, &self.repo)?,
            SecretSource::Command(cmd) => run(&what, cmd, &spec.declared_in)?,
        };
        if value.ends_with('\n') {
            value.pop();
        }
        read.insert(name.to_owned(), value.clone());
        Ok(Some(value))
    }

    /// Every value read so far, to scrub from messages.
    pub fn values_read(&self) -> Vec<String> {
        self.read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|v| !v.is_empty())
            .cloned()
            .collect()
    }
}

/// The nearest directory at or above `config`'s directory that holds
/// `.git`; without one, `config`'s own directory.
pub fn repository_of(config: &Path) -> PathBuf {
    let dir = config.parent().unwrap_or(Path::new("/"));
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(dir)
        .to_owned()
}

fn read_file(what: &str, path: &Path, repo: &Path) -> Result<String, Error> {
    let bad = |msg: String| Error::Invalid(format!("{what}: {}: {msg}", path.display()));
    let real = std::fs::canonicalize(path).map_err(|e| {
        bad(format!(
            "{}; create it (mode 0600) or fix the path",
            io_reason(&e)
        ))
    })?;
    if real.starts_with(repo) {
        return Err(bad(format!(
            "lies inside the configuration repository {}; keep secrets outside it, where they cannot be committed",
            repo.display()
        )));
    }
    // Opened as it was checked: no symlink swapped in since.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&real)
        .map_err(|e| bad(io_reason(&e)))?;
    let md = file.metadata().map_err(|e| bad(io_reason(&e)))?;
    if !md.is_file() {
        return Err(bad("not a regular file; a secret file must be one".into()));
    }
    if md.mode() & 0o077 != 0 {
        return Err(bad(format!(
            "mode {:04o} lets others read or change it; run chmod 600 on it",
            md.mode() & 0o7777
        )));
    }
    let me = nix::unistd::geteuid().as_raw();
    if md.uid() != me {
        return Err(bad(format!(
            "owned by uid {}, not by uid {me} that sysgen runs as; chown it",
            md.uid()
        )));
    }
    let mut value = String::new();
    file.read_to_string(&mut value)
        .map_err(|e| bad(format!("{} (a secret must be UTF-8 text)", e.kind())))?;
    Ok(value)
}

/// How long a secret's command may run: a command waiting for a password
/// prompt that never comes must fail the build, not hang it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `sh -c cmd`; its standard output. Output goes to anonymous files,
/// not pipes, so a process the command leaves behind cannot keep the
/// build waiting for end of file (as the services' checks do).
fn run(what: &str, cmd: &str, declared_in: &Path) -> Result<String, Error> {
    let cannot = |e: std::io::Error| Error::Invalid(format!("{what}: cannot run the command: {e}"));
    let mut out = anonymous(c"sysgen-secret").map_err(cannot)?;
    let mut err = anonymous(c"sysgen-secret-err").map_err(cannot)?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(declared_in.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().map_err(cannot)?))
        .stderr(Stdio::from(err.try_clone().map_err(cannot)?))
        .spawn()
        .map_err(cannot)?;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(cannot)? {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                // Killed and reaped: the failure is reported below either way.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let read = |f: &mut File| -> Result<Vec<u8>, Error> {
        let mut bytes = Vec::new();
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.read_to_end(&mut bytes))
            .map_err(cannot)?;
        Ok(bytes)
    };
    let stdout = read(&mut out)?;
    let stderr = read(&mut err)?;
    let stderr = String::from_utf8_lossy(&stderr);
    let stderr = stderr.trim();
    let said = if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    };
    match status {
        Some(s) if s.success() => {}
        Some(s) => {
            return Err(Error::Invalid(format!(
                "{what}: the command failed ({s}){said}; fix it so that it prints the secret and exits 0"
            )));
        }
        None => {
            return Err(Error::Invalid(format!(
                "{what}: the command did not finish within {}s{said}; it must not wait for input",
                COMMAND_TIMEOUT.as_secs()
            )));
        }
    }
    String::from_utf8(stdout).map_err(|_| {
        Error::Invalid(format!(
            "{what}: the command printed something that is not UTF-8; a secret must be UTF-8 text"
        ))
    })
}

/// A file with no name (memfd), gone when closed: a secret never touches a disk.
fn anonymous(name: &std::ffi::CStr) -> std::io::Result<File> {
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    Ok(File::from(fd))
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}
