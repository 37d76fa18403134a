//! A real OpenSSH server on 127.0.0.1 for the ssh transport and fleet
//! tests: `/usr/sbin/sshd -D -f CONFIG` with a host key and an authorized
//! client key made by `ssh-keygen` in a scratch directory, public-key
//! logins only, stopped when dropped. sshd cannot listen on port 0, so a
//! free port is found first (bind 0, read it, close) and the start retried
//! if another process takes it meanwhile.
//!
//! Hosts are simulated as scratch roots behind this one server: an
//! `ssh://root@127.0.0.1:PORT/ROOT` URL runs `sysgen serve --root ROOT`.
//! The binary under test is not on the server's PATH, so clients get
//! `SYSGEN_REMOTE_PROGRAM` (its absolute path) and `SYSGEN_SSH` (this
//! key, this known-hosts file) from [`Sshd::env`].

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TestEnv, cannot_run, s};

/// The server binary (Debian's openssh-server; scripts/test-deps installs it).
pub const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Sshd {
    /// Starts a server; `None` (after [`cannot_run`]) when this machine
    /// has no OpenSSH.
    pub fn start(test: &str) -> Option<Sshd> {
        for tool in [SSHD, "ssh", "ssh-keygen"] {
            if which(tool).is_none() {
                cannot_run(
                    test,
                    &format!("{tool} is not installed (scripts/test-deps installs it)"),
                );
                return None;
            }
        }
        // sshd's privilege separation chroots into /run/sshd, which the
        // Debian service creates at boot; a container may have none.
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("sysgen-sshd-")
            .tempdir()
            .expect("temp dir");
        for name in ["host", "client"] {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(dir.path().join(name))
                .output()
                .expect("run ssh-keygen");
            assert!(out.status.success(), "ssh-keygen: {out:?}");
        }
        std::fs::copy(
            dir.path().join("client.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("sshd_config");
            std::fs::write(&config, config_text(dir.path(), port)).expect("write sshd_config");
            let log = std::fs::File::create(dir.path().join("sshd.log")).expect("sshd.log");
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start sshd");
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Sshd { dir, port, child });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            last = std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default();
        }
        panic!("sshd did not start on loopback; its log:\n{last}");
    }

    /// The client key (its public half is the only authorized key).
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("client")
    }

    /// The ssh options a client needs for this server.
    pub fn ssh_options(&self) -> Vec<String> {
        let kh = self.dir.path().join("known_hosts");
        vec![
            "-i".into(),
            s(&self.key()).into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", s(&kh)),
            "-o".into(),
            "StrictHostKeyChecking=accept-new".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    /// `ssh://root@127.0.0.1:PORT/ROOT`: a simulated host.
    pub fn url(&self, root: &Path) -> String {
        format!("ssh://root@127.0.0.1:{}{}", self.port, s(root))
    }

    /// The environment a sysgen client needs to reach the server and run
    /// the binary under test there.
    pub fn env(&self) -> Vec<(String, String)> {
        let opts = self
            .ssh_options()
            .iter()
            .map(|o| shell_quote(o))
            .collect::<Vec<_>>()
            .join(" ");
        vec![
            ("SYSGEN_SSH".into(), opts),
            (
                "SYSGEN_REMOTE_PROGRAM".into(),
                s(&TestEnv::sysgen_bin()).into(),
            ),
        ]
    }

    /// What sshd logged (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(dir: &Path, port: u16) -> String {
    let d = s(dir);
    format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {d}/host\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         PidFile none\n\
         # The scratch directory is the test's, not root-owned and 0755.\n\
         StrictModes no\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         UsePAM no\n\
         # Many simulated hosts connect at once in the fleet tests.\n\
         MaxStartups 100:30:200\n\
         MaxSessions 100\n"
    )
}

/// A port nobody listens on now (sshd takes no port 0).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn which(tool: &str) -> Option<PathBuf> {
    if tool.starts_with('/') {
        return Path::new(tool).exists().then(|| PathBuf::from(tool));
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|c| c.exists())
    })
}

/// Single quotes for a shell word (the test's paths have no quote).
fn shell_quote(w: &str) -> String {
    format!("'{}'", w.replace('\'', r"'\''"))
}
