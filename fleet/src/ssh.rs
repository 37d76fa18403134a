//! Running sysgen on a host over ssh: one `ssh` process per command, each
//! a fresh connection (the confirmation must come over a new one: it
//! proves the host is still reachable after its switch).
//!
//! The remote command line is quoted word by word for the remote shell;
//! `--json` documents come back on stdout and are read into typed structs.

use std::process::{Command, Stdio};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::inventory::Host;

/// Options every call gets, before the inventory's own: never prompt,
/// give up on a host that does not answer, notice one that went away.
pub const BASE_OPTIONS: &[&str] = &[
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=20",
    "-o",
    "ServerAliveInterval=10",
    "-o",
    "ServerAliveCountMax=3",
];

/// What one remote command did.
#[derive(Debug)]
pub struct Reply {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    /// The host's error for a summary table: its last `error:` line with
    /// the indented lines that follow it (a refusal lists its causes
    /// there), joined on one line; else the last line of stderr.
    pub fn reason(&self) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let text = match lines.iter().rposition(|l| l.starts_with("error:")) {
            Some(i) => lines[i..]
                .iter()
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join(" "),
            None => match lines.last() {
                Some(l) => l.to_string(),
                None => match self.code {
                    Some(c) => format!("exit status {c}"),
                    None => "killed by a signal".to_owned(),
                },
            },
        };
        text.strip_prefix("error: ").unwrap_or(&text).to_owned()
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.stdout)
            .map_err(|e| format!("unreadable reply ({e}): {}", self.reason()))
    }
}

/// The `ssh` command that runs `sysgen ARGS` on `host` (with its
/// `--root` and `--state-dir`, and `--json`).
pub fn command(host: &Host, args: &[&str]) -> Command {
    let mut words = vec![host.program.clone(), "--root".into(), host.root.clone()];
    if let Some(s) = &host.state_dir {
        words.push("--state-dir".into());
        words.push(s.clone());
    }
    words.push("--json".into());
    words.extend(args.iter().map(|a| a.to_string()));
    let remote: Vec<String> = words.iter().map(|w| quote(w)).collect();
    let mut c = Command::new("ssh");
    c.args(BASE_OPTIONS).args(&host.ssh_options);
    if let Some(p) = host.ssh.port {
        c.arg("-p").arg(p.to_string());
    }
    c.arg("--")
        .arg(host.ssh.destination())
        .arg(remote.join(" "));
    c.stdin(Stdio::null());
    c
}

/// Runs `sysgen ARGS` on `host`; `Err` only when ssh itself could not run.
pub fn run(host: &Host, args: &[&str]) -> Result<Reply, String> {
    let out = command(host, args)
        .output()
        .map_err(|e| format!("cannot run ssh: {e}"))?;
    Ok(Reply {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A word for a POSIX shell: as it is when it is safe, else in single quotes.
fn quote(w: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c);
    if !w.is_empty() && w.chars().all(safe) {
        w.to_owned()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// The part of `switch --json` a deploy reads.
#[derive(Debug, Deserialize)]
pub struct Switched {
    pub from: Option<u64>,
    pub number: u64,
    pub unchanged: bool,
}

/// The part of `status --json` a deploy reads.
#[derive(Debug, Deserialize)]
pub struct Status {
    pub active: Option<Active>,
}

#[derive(Debug, Deserialize)]
pub struct Active {
    pub number: u64,
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        let r = |stderr: &str, code| Reply {
            code,
            stdout: String::new(),
            stderr: stderr.into(),
        };
        assert_eq!(
            r(
                "warning: x\nerror: cannot switch:\n  /etc/a: a directory\n",
                Some(1)
            )
            .reason(),
            "cannot switch: /etc/a: a directory"
        );
        assert_eq!(
            r("ssh: connect refused\n", Some(255)).reason(),
            "ssh: connect refused"
        );
        assert_eq!(r("", None).reason(), "killed by a signal");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("/srv/a-b_c.toml"), "/srv/a-b_c.toml");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$(x)"), "'$(x)'");
    }
}
