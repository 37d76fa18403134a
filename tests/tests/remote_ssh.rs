//! The ssh:// transport through a real OpenSSH server on loopback: the
//! client runs `ssh … sysgen-under-test serve --root ROOT` and speaks the
//! framed protocol to a scratch root's state.

use serde_json::json;
use sysgen_remote::ssh::{SshOptions, open};
use sysgen_tests::remote::{build, files, host_key, keygen, moved, object_key, trust};
use sysgen_tests::sshd::Sshd;
use sysgen_tests::{Run, TestEnv, dump_tree, s, store_holds, stored_frame};

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
            "{url}: the connection closed before `sysgen serve` answered; ssh said: "
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
            "{url}: the remote command is not `sysgen serve` (it printed \"serve --root {}\")",
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

/// Runs the binary on `env` with the server's client settings.
fn run_ssh(env: &TestEnv, sshd: &Sshd, args: &[&str], fault: Option<&str>) -> Run {
    let mut c = env.cmd(args);
    c.envs(sshd.env());
    if let Some(f) = fault {
        c.env("SYSGEN_REMOTE_FAULT", f);
    }
    Run::from(c.output().expect("run sysgen"))
}

/// The deployer pushes into a host's own state over ssh (a scratch root
/// behind a real sshd), then the host switches to it by id; a 1% change
/// moves one object and the nodes on its path; a second host pulls from
/// the first one's state over ssh. Trees compared whole.
#[test]
fn push_over_ssh_into_a_hosts_state_then_switch_there_and_pull_from_it() {
    let Some(sshd) =
        Sshd::start("push_over_ssh_into_a_hosts_state_then_switch_there_and_pull_from_it")
    else {
        return;
    };
    let deployer = TestEnv::new();
    let host = TestEnv::new();
    let public = keygen(&deployer);
    trust(&host, &public);
    let url = sshd.url(&host.root());

    let g1 = build(&deployer, "c1.json", files(100, None, ""));
    let p = run_ssh(
        &deployer,
        &sshd,
        &["--json", "push", &g1, &url, "--ref", "hosts/web1"],
        None,
    )
    .ok();
    assert_eq!(moved(&p), (100, 4, 1, 0), "{}", p.stdout);
    let again = run_ssh(
        &deployer,
        &sshd,
        &["--json", "push", &g1, &url, "--ref", "hosts/web1"],
        None,
    )
    .ok();
    assert_eq!(moved(&again), (0, 0, 0, 100), "{}", again.stdout);
    host.run(&["switch", &g1]).ok();
    deployer.run(&["switch", &g1]).ok();
    assert_eq!(host.tree(), deployer.tree());

    let g2 = build(&deployer, "c2.json", files(100, Some(51), ""));
    let p2 = run_ssh(
        &deployer,
        &sshd,
        &["--json", "push", &g2, &url, "--ref", "hosts/web1"],
        None,
    )
    .ok();
    assert_eq!(moved(&p2), (1, 3, 1, 99), "{}", p2.stdout);
    host.run(&["switch", &g2]).ok();
    deployer.run(&["switch", &g2]).ok();
    assert_eq!(host.tree(), deployer.tree());
    // The host keeps the pushed, signed ref: another host pulls it from
    // there over ssh, checks the signature, and switches.
    let other = TestEnv::new();
    trust(&other, &public);
    let pulled = run_ssh(
        &other,
        &sshd,
        &["--json", "pull", &url, "hosts/web1", "--switch"],
        None,
    )
    .ok();
    assert_eq!(moved(&pulled), (100, 4, 1, 0), "{}", pulled.stdout);
    assert_eq!(other.tree(), deployer.tree());
    // A ref the host does not hold: exit 2, naming it.
    let none = run_ssh(&other, &sshd, &["pull", &url, "hosts/db1"], None);
    assert_eq!(none.code, Some(2), "{}", none.stderr);
    assert!(none.stderr.contains("hosts/db1"), "{}", none.stderr);
}

/// A push over ssh killed at each named step (the deployer dies; its ssh
/// connection with it) leaves the host's state whole: no generation, a
/// store that verifies; the rerun completes, moving only what the killed
/// one had not, and the host switches.
#[test]
fn a_push_over_ssh_killed_at_each_step_leaves_the_host_whole_and_a_rerun_completes() {
    let Some(sshd) = Sshd::start(
        "a_push_over_ssh_killed_at_each_step_leaves_the_host_whole_and_a_rerun_completes",
    ) else {
        return;
    };
    let cases = [
        ("objects:3", (7, 4, 1, 3)),
        ("nodes:2", (0, 2, 1, 10)),
        ("manifest:1", (0, 0, 0, 10)),
    ];
    let deployer = TestEnv::new();
    let public = keygen(&deployer);
    let g = build(&deployer, "c.json", files(10, None, ""));
    deployer.run(&["switch", &g]).ok();
    for (fault, rerun) in cases {
        let host = TestEnv::new();
        trust(&host, &public);
        let url = sshd.url(&host.root());
        let tree = host.tree();
        let killed = run_ssh(
            &deployer,
            &sshd,
            &["push", &g, &url, "--ref", "hosts/web1"],
            Some(fault),
        );
        assert!(
            killed.killed,
            "{fault}: the push was not killed: {killed:?}"
        );
        // The host's `serve` finishes what reached it, then ends: check
        // the state it leaves.
        wait_for_serve_to_end(&host.root());
        assert_eq!(host.tree(), tree, "{fault}: the root changed");
        let list = host.run(&["--json", "list"]).ok().json();
        assert_eq!(list["generations"], json!([]), "{fault}: {list}");
        let again = run_ssh(
            &deployer,
            &sshd,
            &["--json", "push", &g, &url, "--ref", "hosts/web1"],
            None,
        )
        .ok();
        assert_eq!(moved(&again), rerun, "{fault}: {}", again.stdout);
        host.run(&["verify", "--store"]).ok();
        host.run(&["switch", &g]).ok();
        assert_eq!(host.tree(), deployer.tree(), "{fault}");
    }
}

const SECRET: &str = "s3cr3t-token-7f9a2c\n";

/// A secret pushed over ssh travels encrypted to the host's ssh key and
/// is decrypted by `sysgen serve` there with the root's own host key; a
/// host with another key refuses it (exit 2) and keeps nothing.
#[test]
fn a_secret_pushed_over_ssh_is_decrypted_only_by_its_host() {
    let test = "a_secret_pushed_over_ssh_is_decrypted_only_by_its_host";
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let keys = tempfile::tempdir().expect("tempdir");
    let Some((host_priv, host_pub)) = host_key(keys.path(), "host", test) else {
        return;
    };
    let Some((other_priv, _)) = host_key(keys.path(), "other", test) else {
        return;
    };
    let deployer = TestEnv::new();
    let public = keygen(&deployer);
    deployer.write_cfg("token", SECRET);
    let g = build(
        &deployer,
        "c.json",
        json!({ "files": {
            "/etc/app/token": { "source": "token", "secret": true },
            "/etc/motd": { "content": "hello\n" }
        }}),
    );
    deployer.run(&["switch", &g]).ok();
    let host_with = |key: &std::path::Path| {
        let host = TestEnv::new();
        trust(&host, &public);
        std::fs::create_dir_all(host.at("/etc/ssh")).expect("mkdir");
        std::fs::copy(key, host.at("/etc/ssh/ssh_host_ed25519_key")).expect("copy key");
        host
    };
    let push = |host: &TestEnv| {
        let url = sshd.url(&host.root());
        run_ssh(
            &deployer,
            &sshd,
            &[
                "--json",
                "push",
                &g,
                &url,
                "--ref",
                "hosts/web1",
                "--recipient",
                s(&host_pub),
            ],
            None,
        )
    };
    let without_keys =
        |host: &TestEnv| dump_tree(&host.root(), &[host.state(), host.at("/etc/ssh")]);

    let host = host_with(&host_priv);
    let p = push(&host).ok();
    assert_eq!(p.json()["moved"]["secrets"], 1, "{}", p.stdout);
    assert!(!p.stdout.contains(SECRET.trim_end()));
    host.run(&["switch", &g]).ok();
    assert_eq!(
        std::fs::read_to_string(host.at("/etc/app/token")).expect("token"),
        SECRET
    );
    assert_eq!(without_keys(&host), deployer.tree());

    let other = host_with(&other_priv);
    let before = without_keys(&other);
    let refused = push(&other);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("another host's ssh key"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("panicked"), "{}", refused.stderr);
    assert_eq!(without_keys(&other), before);
    let list = other.run(&["--json", "list"]).ok().json();
    assert_eq!(list["generations"], json!([]), "{list}");
}

/// Bad ssh:// and s3:// URLs and a bad SYSGEN_SSH exit 2 naming what is
/// wrong, before anything is started or written.
#[test]
fn bad_ssh_and_s3_urls_exit_2_and_change_nothing() {
    let deployer = TestEnv::new();
    keygen(&deployer);
    let g = build(&deployer, "c.json", files(2, None, ""));
    for (url, needle) in [
        ("ssh://", "ssh://: no host"),
        ("ssh://-oProxyCommand=x/r", "no host"),
        ("ssh://h:99999/r", "port \"99999\" is not a port number"),
        (
            "ssh://h/r?state=relative",
            "the only query is state=/ABSOLUTE/DIR",
        ),
        ("s3://", "s3://: no bucket"),
        ("s3://b/a/../c", "prefix \"a/../c\""),
    ] {
        let r = deployer.run(&["push", &g, url, "--ref", "hosts/a"]);
        assert_eq!(r.code, Some(2), "{url}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{url}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    let r = Run::from(
        deployer
            .cmd(&["push", &g, "ssh://h/r", "--ref", "hosts/a"])
            .env("SYSGEN_SSH", "-i 'unbalanced")
            .output()
            .expect("run"),
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("SYSGEN_SSH=\"-i 'unbalanced\": unbalanced quotes"),
        "{}",
        r.stderr
    );
}

/// `sysgen serve` fed a put cut off mid-frame (a client killed while
/// sending, as a dropped connection leaves it): the whole put before it is
/// stored and answered, the cut one is never applied, and serve says the
/// stream broke (exit 1). Run without ssh, on its stdin, to cut exactly.
#[test]
fn serve_never_applies_a_put_cut_off_mid_frame() {
    use sysgen_remote::ssh_proto::{MAGIC, Reply, Request, write_frame};
    let host = TestEnv::new();
    let (a, b) = (
        b"object a, whole\n".as_slice(),
        b"object b, cut off\n".as_slice(),
    );
    let mut input = Vec::new();
    for (content, cut) in [(a, false), (b, true)] {
        let mut frame = Vec::new();
        let req = Request::Put {
            key: object_key(content),
        };
        write_frame(&mut frame, &req, &[&stored_frame(content)]).expect("frame");
        if cut {
            frame.truncate(frame.len() - 3);
        }
        input.extend(frame);
    }
    let mut c = host.cmd(&["serve"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("spawn serve");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        std::io::Write::write_all(&mut stdin, &input).expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    let mut want = MAGIC.to_vec();
    write_frame(&mut want, &Reply::Put, &[]).expect("frame");
    assert_eq!(out.stdout, want, "{}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sysgen serve: the client's stream broke: the stream ended"),
        "{stderr}"
    );
    assert!(store_holds(&host.state().join("store"), a, false));
    assert!(!store_holds(&host.state().join("store"), b, false));
}

/// Waits (up to 20 s) until no `sysgen serve` for `root` runs any more:
/// a killed client's session ends once its server has read the rest of
/// its stream.
fn wait_for_serve_to_end(root: &std::path::Path) {
    let needle = format!("serve\0--root\0{}", root.display());
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let running = std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .any(|c| String::from_utf8_lossy(&c).contains(&needle));
        if !running {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "sysgen serve for {} still runs",
            root.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A put of an object is pipelined: a corrupt one (bytes that do not match
/// its name) is reported at the next request, naming its key, as corrupt;
/// the objects around it are stored, and the connection goes on.
#[test]
fn a_pipelined_put_that_fails_is_reported_at_the_next_request_by_its_key() {
    use sysgen_remote::Transport;
    let Some(sshd) =
        Sshd::start("a_pipelined_put_that_fails_is_reported_at_the_next_request_by_its_key")
    else {
        return;
    };
    let host = TestEnv::new();
    let url = sshd.url(&host.root());
    let t = open(&url, &options(&sshd)).expect("connect");
    let (a, b, c) = (b"a\n".as_slice(), b"b\n".as_slice(), b"c\n".as_slice());
    t.put(&object_key(a), &stored_frame(a)).expect("put a");
    // b's name, c's bytes.
    t.put(&object_key(b), &stored_frame(c))
        .expect("sent, not answered yet");
    t.put(&object_key(c), &stored_frame(c)).expect("put c");
    let e = t
        .has(&[object_key(a), object_key(b), object_key(c)])
        .expect_err("b's failure");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{url}: {}: corrupt: ", object_key(b))),
        "{msg}"
    );
    assert_eq!(
        t.has(&[object_key(a), object_key(b), object_key(c)])
            .expect("has"),
        vec![true, false, true]
    );
    drop(t);
    wait_for_serve_to_end(&host.root());
    let store = host.state().join("store");
    assert!(store_holds(&store, a, false) && store_holds(&store, c, false));
    assert!(!store_holds(&store, b, false));
}
