//! Running the root's own shadow tools: directly on `/`, through
//! `chroot(8)` elsewhere (as apt runs), so the root's login.defs, PAM and
//! NSS configuration and its tools' version apply, offline. The tools take
//! the `lckpwdf` lock of the root's account files themselves.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::UsersError;
use crate::Error;

/// The tools sysgen runs, by their path inside the root.
pub(crate) const USERADD: &str = "/usr/sbin/useradd";

/// Runs `prog` (a path inside the root) with `args`; `input` goes to its
/// stdin (a password hash never goes on a command line, where `ps` shows
/// it). An error names the command (never the input) and its stderr.
pub(crate) fn run(
    root: &Path,
    prog: &str,
    args: &[&str],
    input: Option<&[u8]>,
) -> Result<(), Error> {
    let mut c = if root == Path::new("/") {
        Command::new(prog)
    } else {
        let mut c = Command::new("chroot");
        c.arg(root).arg(prog);
        c
    };
    c.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Messages are read by people, in one language.
        .env("LC_ALL", "C")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let command = format!("{prog} {}", args.join(" "));
    let fail = |why: String| {
        Error::Users(UsersError {
            command: command.clone(),
            why,
        })
    };
    let mut child = c.spawn().map_err(|e| {
        fail(format!(
            "cannot run it in the root {}: {e}; check that the root has the passwd package and that sysgen runs as root",
            root.display()
        ))
    })?;
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(bytes)
            .map_err(|e| fail(format!("writing its input: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for it: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(fail(format!("{}: {}", out.status, stderr.trim())))
}
