//! The ssh:// transport through a real OpenSSH server on loopback: the
//! client runs `ssh … sysgen-under-test serve --root ROOT` and speaks the
//! framed protocol to a scratch root's state.

use sysgen_remote::ssh::{SshOptions, open};
use sysgen_tests::TestEnv;
use sysgen_tests::sshd::Sshd;

fn options(sshd: &Sshd) -> SshOptions {
    SshOptions {
        args: sshd.ssh_options(),
        program: TestEnv::sysgen_bin().to_string_lossy().into_owned(),
        ..SshOptions::default()
    }
}

/// What fails before the protocol starts is reported with what ssh and
/// the remote command said: a key the server does not accept, a remote
/// command that is not `sysgen serve`, a root that is not a directory.
#[test]
fn connection_failures_name_the_remote_and_say_why() {
    let Some(sshd) = Sshd::start("connection_failures_name_the_remote_and_say_why") else {
        return;
    };
    let env = TestEnv::new();
    let url = sshd.url(&env.root());

    let mut stranger = options(&sshd);
    let other_key = sshd.dir.path().join("stranger");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other_key)
        .status()
        .expect("ssh-keygen");
    assert!(made.success());
    stranger.args[1] = other_key.to_string_lossy().into_owned();
    let e = open(&url, &stranger).err().expect("refused");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "{url}: : the connection closed before `sysgen serve` answered; ssh said: "
        )) && msg.contains("Permission denied (publickey)"),
        "{msg}\nsshd log:\n{}",
        sshd.log()
    );

    let echo = SshOptions {
        program: "/bin/echo".into(),
        ..options(&sshd)
    };
    let e = open(&url, &echo).err().expect("not sysgen");
    assert_eq!(
        e.to_string(),
        format!(
            "{url}: : the remote command is not `sysgen serve` (it printed \"serve --root {}\")",
            env.root().display()
        )
    );

    let nowhere = sshd.url(&env.root().join("no/such/root"));
    let e = open(&nowhere, &options(&sshd)).err().expect("no root");
    let msg = e.to_string();
    assert!(
        msg.contains("the connection closed before `sysgen serve` answered; ssh said: ")
            && msg.contains("no/such/root: not a directory"),
        "{msg}"
    );
}
