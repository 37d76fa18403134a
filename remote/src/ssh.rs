//! `ssh://[user@]host[:port][/ROOT][?state=DIR]`: another host's state
//! directory, reached by running `sysgen serve` there under OpenSSH's
//! client and speaking [`crate::ssh_proto`] over its stdin/stdout.
//!
//! The URL's path is the remote root (`--root`, default `/`) and `state=`
//! its state directory (`--state-dir`), so one sshd can front many
//! simulated hosts (scratch roots). The client is the system's `ssh`, so
//! that keys, agents, `~/.ssh/config`, jump hosts and known hosts work as
//! they do for the user; sysgen adds `-o BatchMode=yes` (never a password
//! prompt in a deploy) and the options the caller passes ([`SshOptions`]).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Error;
use crate::layout::Key;
use crate::ssh_proto::{MAGIC, Reply, Request, read_frame, write_frame};
use crate::transport::{Swap, Transport};

/// How the client is started (the CLI fills this from `--ssh-option`,
/// `SYSGEN_SSH` and `SYSGEN_REMOTE_PROGRAM`).
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// The ssh client.
    pub ssh: PathBuf,
    /// Extra arguments for it, before the host (`-i KEY`, `-o X=Y`…).
    pub args: Vec<String>,
    /// The sysgen to run on the other side.
    pub program: String,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            ssh: PathBuf::from("ssh"),
            args: Vec::new(),
            program: "sysgen".into(),
        }
    }
}

impl SshOptions {
    /// From `SYSGEN_SSH` (extra ssh arguments, split as a shell would) and
    /// `SYSGEN_REMOTE_PROGRAM`, read through `var` (the caller's
    /// environment; the library reads none).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<SshOptions, String> {
        let mut o = SshOptions::default();
        if let Some(v) = var("SYSGEN_SSH") {
            o.args = shlex::split(&v).ok_or_else(|| {
                format!("SYSGEN_SSH={v:?}: unbalanced quotes; write the options as on a shell command line")
            })?;
        }
        if let Some(p) = var("SYSGEN_REMOTE_PROGRAM").filter(|p| !p.is_empty()) {
            o.program = p;
        }
        Ok(o)
    }
}

/// Where an `ssh://` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub root: Option<String>,
    pub state_dir: Option<String>,
}

/// Reads `ssh://[user@]host[:port][/ROOT][?state=DIR]`.
pub fn parse(url: &str) -> Result<Address, String> {
    let rest = url.strip_prefix("ssh://").ok_or("not an ssh:// URL")?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, root) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("an IPv6 host without its closing ]")?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() || host.starts_with('-') {
        return Err("no host: write ssh://[user@]host[:port][/ROOT]".into());
    }
    if user.is_some_and(|u| u.is_empty() || u.starts_with('-')) {
        return Err("an empty or dash-led user name".into());
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or(format!("port {p:?} is not a port number"))
        })
        .transpose()?;
    let mut state_dir = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("state", v)) if v.starts_with('/') => state_dir = Some(v.to_owned()),
            _ => return Err(format!("{pair:?}: the only query is state=/ABSOLUTE/DIR")),
        }
    }
    Ok(Address {
        user: user.map(str::to_owned),
        host: host.to_owned(),
        port,
        root: root.filter(|r| *r != "/").map(str::to_owned),
        state_dir,
    })
}

/// The most of ssh's stderr kept for messages.
const STDERR_KEPT: usize = 16 << 10;

/// How many puts of objects (and secrets) are sent before their replies
/// are read. Each reply is a few dozen bytes, so the window's replies fit
/// any pipe buffer: the server never blocks writing while the client
/// blocks writing (no deadlock).
const PUTS_IN_FLIGHT: usize = 64;

struct Conn {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// A frame failed halfway: nothing more can be read in step.
    broken: bool,
    /// The keys of puts sent whose replies are not read yet, oldest first.
    pending: VecDeque<String>,
}

pub struct SshTransport {
    url: String,
    conn: Mutex<Conn>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

/// Starts `ssh … PROGRAM serve` and waits for the server's greeting.
pub fn open(url: &str, opts: &SshOptions) -> Result<SshTransport, Error> {
    let fail = |message: String| Error::Remote {
        remote: url.to_owned(),
        key: String::new(),
        message,
    };
    // A URL that does not parse is the user's input: exit 2.
    let a = parse(url).map_err(|m| Error::Invalid(format!("{url}: {m}")))?;
    let mut remote = vec![opts.program.clone(), "serve".into()];
    if let Some(r) = &a.root {
        remote.extend(["--root".into(), r.clone()]);
    }
    if let Some(s) = &a.state_dir {
        remote.extend(["--state-dir".into(), s.clone()]);
    }
    // ssh hands the command to the remote user's shell as one string.
    let command = shlex::try_join(remote.iter().map(String::as_str))
        .map_err(|e| fail(format!("cannot quote the remote command: {e}")))?;
    let mut cmd = Command::new(&opts.ssh);
    cmd.args(["-o", "BatchMode=yes", "-T"]);
    cmd.args(&opts.args);
    if let Some(p) = a.port {
        cmd.arg("-p").arg(p.to_string());
    }
    if let Some(u) = &a.user {
        cmd.arg("-l").arg(u);
    }
    cmd.arg("--").arg(&a.host).arg(command);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", opts.ssh.display())))?;
    let stderr = Arc::new(Mutex::new(Vec::new()));
    if let Some(mut err) = child.stderr.take() {
        let keep = stderr.clone();
        // Kept for messages; a thread, since ssh may write at any time and
        // a full pipe would stall it.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut k) = keep.lock() {
                    let room = STDERR_KEPT.saturating_sub(k.len());
                    k.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        });
    }
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(fail("ssh started without its pipes".into()));
    };
    let t = SshTransport {
        url: url.to_owned(),
        conn: Mutex::new(Conn {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            broken: false,
            pending: VecDeque::new(),
        }),
        stderr,
    };
    t.greet()?;
    Ok(t)
}

impl SshTransport {
    fn err(&self, key: &str, message: impl std::fmt::Display) -> Error {
        Error::Remote {
            remote: self.url.clone(),
            key: key.to_owned(),
            message: message.to_string(),
        }
    }

    /// What ssh (and the remote command) said on stderr, for a message.
    fn said(&self) -> String {
        // Give the reader thread a moment to collect the last words of a
        // process that just died.
        std::thread::sleep(Duration::from_millis(50));
        let text = self
            .stderr
            .lock()
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .unwrap_or_default();
        if text.is_empty() {
            String::new()
        } else {
            format!("; ssh said: {text}")
        }
    }

    /// The server's first line must be [`MAGIC`]; anything else (a login
    /// banner, "command not found") is shown, up to a line.
    fn greet(&self) -> Result<(), Error> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| self.err("", "a poisoned connection"))?;
        let mut got = Vec::new();
        let r = (&mut conn.stdout).take(256).read_until(b'\n', &mut got);
        if r.is_ok() && got == MAGIC {
            return Ok(());
        }
        conn.broken = true;
        let shown = String::from_utf8_lossy(&got).trim().to_owned();
        Err(self.err(
            "",
            if got.is_empty() {
                format!(
                    "the connection closed before `sysgen serve` answered{}",
                    self.said()
                )
            } else {
                format!(
                    "the remote command is not `sysgen serve` (it printed {shown:?}){}",
                    self.said()
                )
            },
        ))
    }

    fn conn(&self, key: &str) -> Result<std::sync::MutexGuard<'_, Conn>, Error> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| self.err(key, "a poisoned connection"))?;
        if conn.broken {
            return Err(self.err(key, "the connection broke earlier; reconnect"));
        }
        Ok(conn)
    }

    fn send(&self, c: &mut Conn, key: &str, req: &Request, body: &[&[u8]]) -> Result<(), Error> {
        let r = match c.stdin.as_mut() {
            Some(w) => write_frame(w, req, body),
            None => Err(std::io::Error::other("closed")),
        };
        r.map_err(|e| {
            c.broken = true;
            self.err(key, format!("the connection broke: {e}{}", self.said()))
        })
    }

    fn receive(&self, c: &mut Conn, key: &str) -> Result<(Reply, Vec<u8>), Error> {
        match read_frame::<Reply>(&mut c.stdout) {
            Ok(Some((Reply::Failed { message, kind }, _))) => {
                Err(kind.error(&self.url, key, message))
            }
            Ok(Some(r)) => Ok(r),
            Ok(None) => {
                c.broken = true;
                Err(self.err(key, format!("the connection closed{}", self.said())))
            }
            Err(e) => {
                c.broken = true;
                Err(self.err(key, format!("the connection broke: {e}{}", self.said())))
            }
        }
    }

    /// Reads the replies of the puts in flight until at most `keep` are
    /// left, oldest first. A failed put is reported (by its key) once the
    /// others read are in step again.
    fn settle(&self, c: &mut Conn, keep: usize) -> Result<(), Error> {
        let mut failed = None;
        while c.pending.len() > keep {
            let Some(key) = c.pending.pop_front() else {
                break;
            };
            match self.receive(c, &key) {
                Ok((Reply::Put, _)) => {}
                Ok((r, _)) => {
                    c.broken = true;
                    return Err(self.unexpected(&key, &r));
                }
                Err(e) if c.broken => return Err(e),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// One request and its reply, after the replies of every put in
    /// flight: a request is never answered before the puts sent before it.
    fn call(&self, key: &str, req: &Request, body: &[&[u8]]) -> Result<(Reply, Vec<u8>), Error> {
        let mut conn = self.conn(key)?;
        let c = &mut *conn;
        self.settle(c, 0)?;
        self.send(c, key, req, body)?;
        self.receive(c, key)
    }

    fn unexpected(&self, key: &str, r: &Reply) -> Error {
        self.err(key, format!("the remote answered out of turn: {r:?}"))
    }
}

impl Transport for SshTransport {
    fn describe(&self) -> String {
        self.url.clone()
    }

    /// One round trip for the whole batch.
    fn has(&self, keys: &[String]) -> Result<Vec<bool>, Error> {
        let req = Request::Has {
            keys: keys.to_vec(),
        };
        match self.call("", &req, &[])? {
            (Reply::Has { present }, _) if present.len() == keys.len() => Ok(present),
            (r, _) => Err(self.unexpected("", &r)),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let req = Request::Get { key: key.into() };
        match self.call(key, &req, &[])? {
            (Reply::Got { found: true }, b) => Ok(Some(b)),
            (Reply::Got { found: false }, _) => Ok(None),
            (r, _) => Err(self.unexpected(key, &r)),
        }
    }

    /// Objects and secrets are sent without waiting for their replies
    /// (up to [`PUTS_IN_FLIGHT`]): over a slow link a round trip per
    /// object would dominate. Their failures surface at the next call,
    /// which always comes before anything refers to them (sync puts nodes
    /// after objects, and every other request reads the replies first).
    /// Only leaves go this way: a node or manifest sent after a failed
    /// put of something it refers to could be stored and then hide the
    /// hole from a rerun's `has`.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), Error> {
        let req = Request::Put { key: key.into() };
        if !matches!(Key::parse(key), Ok(Key::Object(_) | Key::Secret { .. })) {
            return match self.call(key, &req, &[bytes])? {
                (Reply::Put, _) => Ok(()),
                (r, _) => Err(self.unexpected(key, &r)),
            };
        }
        let mut conn = self.conn(key)?;
        let c = &mut *conn;
        self.settle(c, PUTS_IN_FLIGHT - 1)?;
        self.send(c, key, &req, &[bytes])?;
        c.pending.push_back(key.to_owned());
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let req = Request::List {
            prefix: prefix.into(),
        };
        match self.call(prefix, &req, &[])? {
            (Reply::Keys { keys }, _) => Ok(keys),
            (r, _) => Err(self.unexpected(prefix, &r)),
        }
    }

    fn swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<Swap, Error> {
        let req = Request::Swap {
            key: key.into(),
            expected_len: expected.map(|e| e.len() as u64),
        };
        match self.call(key, &req, &[expected.unwrap_or_default(), new])? {
            (Reply::Swapped { done: true, .. }, _) => Ok(Swap::Done),
            (Reply::Swapped { done: false, found }, b) => Ok(Swap::Lost(found.then_some(b))),
            (r, _) => Err(self.unexpected(key, &r)),
        }
    }
}

impl Drop for SshTransport {
    /// Closing stdin ends `sysgen serve`; ssh then exits. A server that
    /// does not within a few seconds is killed rather than waited for.
    fn drop(&mut self) {
        let Ok(conn) = self.conn.get_mut() else {
            return;
        };
        drop(conn.stdin.take());
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            match conn.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = conn.child.kill();
        let _ = conn.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let a = parse("ssh://root@127.0.0.1:2222/srv/hosts/h1?state=/srv/state/h1").expect("ok");
        assert_eq!(
            a,
            Address {
                user: Some("root".into()),
                host: "127.0.0.1".into(),
                port: Some(2222),
                root: Some("/srv/hosts/h1".into()),
                state_dir: Some("/srv/state/h1".into()),
            }
        );
        let b = parse("ssh://web1").expect("ok");
        assert_eq!(
            (b.user, b.host.as_str(), b.port, b.root),
            (None, "web1", None, None)
        );
        let c = parse("ssh://[::1]:22/").expect("ok");
        assert_eq!((c.host.as_str(), c.port, c.root), ("::1", Some(22), None));
        for bad in [
            "http://x",
            "ssh://",
            "ssh://-oProxyCommand=x",
            "ssh://h:0",
            "ssh://h:x",
            "ssh://@h",
            "ssh://h/r?state=rel",
            "ssh://h/r?x=1",
        ] {
            assert!(parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn options_from_the_environment() {
        let o = SshOptions::from_vars(|k| match k {
            "SYSGEN_SSH" => Some("-i '/k ey' -o StrictHostKeyChecking=accept-new".into()),
            "SYSGEN_REMOTE_PROGRAM" => Some("/opt/sysgen".into()),
            _ => None,
        })
        .expect("ok");
        assert_eq!(
            o.args,
            ["-i", "/k ey", "-o", "StrictHostKeyChecking=accept-new"]
        );
        assert_eq!(o.program, "/opt/sysgen");
        assert!(SshOptions::from_vars(|_| Some("'unbalanced".into())).is_err());
    }
}
