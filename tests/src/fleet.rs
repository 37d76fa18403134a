//! Fleet tests' parts: a real OpenSSH sshd on loopback that the test
//! starts (its own host key, one authorized client key made by
//! `ssh-keygen`), and the `ssh` command line that reaches it. Hosts are
//! simulated as scratch roots behind this one sshd (`--root` on the
//! remote command line).
//!
//! (`transports` has its own in `sshd.rs`; the two are to be merged.)

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running sshd; stopped (SIGKILL) on drop.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

const SSHD: &str = "/usr/sbin/sshd";

impl Sshd {
    /// Starts sshd on a free loopback port, or returns `None` (after
    /// [`crate::cannot_run`]) when OpenSSH is not installed.
    pub fn start(test: &str) -> Option<Sshd> {
        for tool in [SSHD, "ssh", "ssh-keygen"] {
            if which(tool).is_none() {
                crate::cannot_run(
                    test,
                    &format!("{tool} is not installed (scripts/test-deps)"),
                );
                return None;
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).expect("copy key");
        // sshd insists on its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n\
             LogLevel ERROR\nMaxSessions 100\nMaxStartups 100:30:200\n",
            hk = d.join("host_key").display(),
            ak = d.join("authorized_keys").display(),
        );
        std::fs::write(d.join("sshd_config"), config).expect("write sshd_config");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).expect("log"))
            .spawn()
            .expect("start sshd");
        let sshd = Sshd { dir, port, child };
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < until,
                "sshd did not listen on port {port}: {}",
                std::fs::read_to_string(sshd.dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(sshd)
    }

    /// `ssh://root@127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("ssh://root@127.0.0.1:{}", self.port)
    }

    /// The options every client call needs: the key, a known-hosts file of
    /// the test's own, batch mode.
    pub fn options(&self) -> Vec<String> {
        let d = self.dir.path();
        vec![
            "-i".into(),
            d.join("client_key").display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", d.join("known_hosts").display()),
            "-o".into(),
            "StrictHostKeyChecking=accept-new".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    /// `ssh ... -p PORT -- root@127.0.0.1 REMOTE-COMMAND...`
    pub fn ssh(&self, remote: &[&str]) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.options())
            .args(["-p", &self.port.to_string(), "--", "root@127.0.0.1"])
            .args(remote);
        c
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "sysgen-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port that was free a moment ago (sshd cannot be given port 0).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn which(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        return Path::new(tool).exists().then(|| PathBuf::from(tool));
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|p| p.exists())
    })
}

/// Polls `f` every 100 ms until it returns true or `secs` pass.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
