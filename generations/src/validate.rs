//! Commands run in the root: `files.<path>.validate`, against the new
//! content staged in a temporary file before the journal is written, and
//! the generation's `checks` after the switch ([`crate::checks`]).
//!
//! A command runs as `/bin/sh -c COMMAND`, in the root: directly when the
//! root is `/`, through `chroot(8)` otherwise, so it is the root's own
//! `visudo`, `nginx` or `sshd` that judges, with the root's libraries and
//! includes. Its output goes to an anonymous file (not a pipe: a process it
//! leaves behind cannot keep sysgen waiting), and it is killed when it
//! outlives its timeout.
//!
//! The staged copy lives in a private directory under the root's `/tmp`
//! (`/tmp/.sysgen-validate.<pid>.<n>/`, mode 0700), named like the file
//! (tools look at the name), with the mode and owner it will have (visudo
//! checks them). It is removed whatever the verdict.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sysgen_schema::EntryPath;
use sysgen_store::{Area, Hash};

use crate::rootfs::{Live, Owner};
use crate::{Error, State};

/// How long a validate command may run.
pub const VALIDATE_TIMEOUT: Duration = Duration::from_secs(60);

/// How many last lines of a command's output an error shows.
const OUTPUT_LINES: usize = 20;

/// What a command did: its exit status (`None`: killed at its timeout)
/// and its last lines of output (stdout and stderr, interleaved).
pub struct Ran {
    pub status: Option<ExitStatus>,
    pub output: Vec<String>,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// "exited with status 1", "was killed by a signal", "did not finish within 60s".
    pub fn verdict(&self, timeout: Duration) -> String {
        match self.status {
            Some(s) => match s.code() {
                Some(c) => format!("exited with status {c}"),
                None => "was killed by a signal".into(),
            },
            None => format!("did not finish within {}s", timeout.as_secs()),
        }
    }
}

/// Whether `root` is the running system's `/` (no chroot needed).
fn is_slash(root: &Path) -> bool {
    std::fs::canonicalize(root).is_ok_and(|p| p == Path::new("/"))
}

/// Runs `/bin/sh -c command` in the root, for at most `timeout`.
pub fn run_in_root(root: &Path, command: &str, timeout: Duration) -> std::io::Result<Ran> {
    let mut log = anonymous_file()?;
    let mut c = if is_slash(root) {
        Command::new("/bin/sh")
    } else {
        let mut c = Command::new("chroot");
        c.arg(root).arg("/bin/sh");
        c
    };
    let mut child = c
        .arg("-c")
        .arg(command)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log.try_clone()?))
        .spawn()?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait()? {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                // Killed and reaped; its verdict is the timeout, whatever
                // kill or wait say.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut bytes = Vec::new();
    log.seek(SeekFrom::Start(0))?;
    log.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let output = lines[lines.len().saturating_sub(OUTPUT_LINES)..]
        .iter()
        .map(|l| l.to_string())
        .collect();
    Ok(Ran { status, output })
}

/// A file with no name (memfd), gone when closed.
fn anonymous_file() -> std::io::Result<File> {
    let fd =
        nix::sys::memfd::memfd_create(c"sysgen-command", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    Ok(File::from(fd))
}

/// The new content of one file, to check before anything changes.
pub struct Staged<'a> {
    /// Where the command is declared, for messages: `files./etc/x`.
    pub label: String,
    pub path: &'a EntryPath,
    pub command: &'a str,
    pub content: Content,
    pub mode: u32,
    pub owner: Owner,
}

/// Where the new content is.
pub enum Content {
    /// In the store (a file of the tree).
    Stored { hash: Hash, area: Area },
    /// Made now (a file with its blocks edited).
    Bytes(Vec<u8>),
}

static STAGE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Where staged copies go: `/tmp/.sysgen-validate.<pid>.<n>/`.
const STAGE_PREFIX: &str = "/tmp/.sysgen-validate.";

/// Removes the staging directories a sysgen killed while it validated
/// left behind (they may hold a copy of a secret file). Those of this
/// process are its own; the state's lock keeps any other sysgen of this
/// state directory from validating now.
fn clean_leftovers(state: &State, tmp: &EntryPath) -> Result<(), Error> {
    let root = &state.root;
    let ours = format!(".sysgen-validate.{}.", std::process::id());
    let prefix = STAGE_PREFIX.trim_start_matches("/tmp/");
    for name in root.list_dir(tmp)? {
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.starts_with(prefix) && !name.starts_with(&ours) {
            let p = tmp
                .join(name)
                .map_err(|e| Error::Internal(format!("/tmp/{name}: {e}")))?;
            root.remove_tree(&p)?;
        }
    }
    Ok(())
}

fn internal_path(s: &str) -> Result<EntryPath, Error> {
    EntryPath::parse(s).map_err(|e| Error::Internal(format!("{s}: {e}")))
}

/// Stages `f`'s new content in the root and runs its validate command on
/// the copy. `Err(Error::Invalid)` when the command fails: the message
/// names the file, the command as run and its output.
pub fn validate(state: &State, f: &Staged<'_>) -> Result<(), Error> {
    let root = &state.root;
    let tmp = internal_path("/tmp")?;
    if !matches!(root.inspect(&tmp)?, Live::Dir(_)) {
        return Err(Error::Invalid(format!(
            "{}.validate: the root {} has no /tmp directory to stage the new content in; create it (mode 1777)",
            f.label,
            root.path().display()
        )));
    }
    clean_leftovers(state, &tmp)?;
    let n = STAGE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = internal_path(&format!("{STAGE_PREFIX}{}.{n}", std::process::id()))?;
    let copy = dir
        .join(f.path.file_name())
        .map_err(|e| Error::Internal(format!("staging {}: {e}", f.path)))?;
    root.make_dir(&dir, Some(0o700), Owner::default())?;
    let ran = stage_and_run(state, f, &copy);
    // The copy goes whatever the verdict (the directory is empty after it).
    let removed = root.remove(&copy).and_then(|_| root.remove(&dir));
    let (command, ran) = ran?;
    removed?;
    if ran.ok() {
        return Ok(());
    }
    let mut msg = format!(
        "{}: its new content failed validation, so nothing was changed: `{command}` {}",
        f.label,
        ran.verdict(VALIDATE_TIMEOUT)
    );
    for l in &ran.output {
        msg.push_str("\n  ");
        msg.push_str(l);
    }
    msg.push_str(
        "\nfix the file's content in the configuration (or its validate command) and switch again",
    );
    Err(Error::Invalid(msg))
}

fn stage_and_run(state: &State, f: &Staged<'_>, copy: &EntryPath) -> Result<(String, Ran), Error> {
    let root = &state.root;
    let store = &state.store;
    root.put_file(copy, f.mode, f.owner, &mut |out| match &f.content {
        Content::Stored { hash, area } => store
            .copy_to(hash, *area, out)
            .map(drop)
            .map_err(std::io::Error::other),
        Content::Bytes(b) => out.write_all(b),
    })?;
    let quoted = shlex::try_quote(copy.as_str()).map_err(|e| {
        Error::Invalid(format!(
            "{}.validate: cannot quote the staged path for the shell: {e}",
            f.label
        ))
    })?;
    let command = f.command.replace("%s", &quoted);
    let ran = run_in_root(root.path(), &command, VALIDATE_TIMEOUT).map_err(|e| {
        Error::Invalid(format!(
            "{}.validate: cannot run `{command}` in the root {}: {e}",
            f.label,
            root.path().display()
        ))
    })?;
    Ok((command, ran))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

    use super::*;

    #[test]
    fn commands_pass_fail_and_time_out_with_their_output() {
        let t = Duration::from_secs(5);
        assert!(run_in_root(Path::new("/"), "true", t).unwrap().ok());
        let r = run_in_root(Path::new("/"), "echo one; echo two >&2; exit 3", t).unwrap();
        assert_eq!(r.verdict(t), "exited with status 3");
        assert_eq!(r.output, ["one", "two"]);
        let start = Instant::now();
        assert!(
            run_in_root(Path::new("/"), "sleep 3 & true", t)
                .unwrap()
                .ok()
        );
        let r = run_in_root(Path::new("/"), "sleep 4", Duration::from_secs(1)).unwrap();
        assert_eq!(
            r.verdict(Duration::from_secs(1)),
            "did not finish within 1s"
        );
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
