//! Fleet tests' helpers, on top of the real OpenSSH server of
//! [`crate::sshd`] (hosts are simulated as scratch roots behind it,
//! `--root` on the remote command line).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::sshd::Sshd;

/// `ssh://root@127.0.0.1:PORT`: the inventory's address of every
/// simulated host (each has its own `root`).
pub fn url(sshd: &Sshd) -> String {
    format!("ssh://root@127.0.0.1:{}", sshd.port)
}

/// The options every client call needs, batch mode included.
pub fn options(sshd: &Sshd) -> Vec<String> {
    let mut o = sshd.ssh_options();
    o.extend(["-o".into(), "BatchMode=yes".into()]);
    o
}

/// `ssh ... -p PORT -- root@127.0.0.1 REMOTE-COMMAND...`
pub fn ssh(sshd: &Sshd, remote: &[&str]) -> Command {
    let mut c = Command::new("ssh");
    c.args(options(sshd))
        .args(["-p", &sshd.port.to_string(), "--", "root@127.0.0.1"])
        .args(remote);
    c
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
