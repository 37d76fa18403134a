//! Push and pull through an s3:// remote (Garage on loopback), with the
//! real binary: only missing objects move, counted exactly; a push killed
//! at each step leaves the bucket consistent; two deployers racing on one
//! ref: one wins, the other is refused.

use sysgen_remote::Transport;
use sysgen_tests::remote::{build, files, keygen, moved, trust};
use sysgen_tests::s3::Garage;
use sysgen_tests::sshd::Sshd;
use sysgen_tests::{Run, TestEnv};

/// Runs the binary on `env` with the store's AWS_* variables.
fn cmd(env: &TestEnv, g: &Garage, args: &[&str], fault: Option<&str>) -> std::process::Command {
    let mut c = env.cmd(args);
    c.envs(g.env());
    // The tests' own HOME must not lend them ~/.aws settings.
    c.env("HOME", env.dir.path());
    if let Some(f) = fault {
        c.env("SYSGEN_REMOTE_FAULT", f);
    }
    c
}

fn run(env: &TestEnv, g: &Garage, args: &[&str]) -> Run {
    Run::from(cmd(env, g, args, None).output().expect("run sysgen"))
}

/// The keys under `prefix` in the remote, counted by their first part.
fn census(t: &dyn Transport) -> Vec<(String, usize)> {
    let mut out = std::collections::BTreeMap::<String, usize>::new();
    for k in t.list("").expect("list") {
        let top = k.split('/').next().unwrap_or_default().to_owned();
        *out.entry(top).or_default() += 1;
    }
    out.into_iter().collect()
}

fn counts(v: &[(&str, usize)]) -> Vec<(String, usize)> {
    v.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

/// Push to a bucket, pull from it on a host: only missing objects move,
/// counted exactly both ways, and the bucket holds exactly the closures,
/// signatures and the ref; trees compared whole.
#[test]
fn push_and_pull_over_s3_move_only_what_is_missing() {
    let Some(g) = Garage::start("push_and_pull_over_s3_move_only_what_is_missing") else {
        return;
    };
    let deployer = TestEnv::new();
    let host = TestEnv::new();
    let public = keygen(&deployer);
    trust(&host, &public);
    let url = g.url("fleet");
    let t = g.open("fleet");

    let g1 = build(&deployer, "c1.json", files(100, None, "v1 "));
    let p = run(
        &deployer,
        &g,
        &["--json", "push", &g1, &url, "--ref", "hosts/web1"],
    )
    .ok();
    assert_eq!(moved(&p), (100, 4, 1, 0), "{}", p.stdout);
    assert_eq!(
        census(&t),
        counts(&[
            ("hosts", 1),
            ("manifests", 1),
            ("nodes", 4),
            ("objects", 100),
            ("signatures", 1)
        ])
    );
    let pulled = run(
        &host,
        &g,
        &["--json", "pull", &url, "hosts/web1", "--switch"],
    )
    .ok();
    assert_eq!(moved(&pulled), (100, 4, 1, 0), "{}", pulled.stdout);
    deployer.run(&["switch", &g1]).ok();
    assert_eq!(host.tree(), deployer.tree());

    let g2 = build(&deployer, "c2.json", files(100, Some(51), "v1 "));
    let p2 = run(
        &deployer,
        &g,
        &["--json", "push", &g2, &url, "--ref", "hosts/web1"],
    )
    .ok();
    assert_eq!(moved(&p2), (1, 3, 1, 99), "{}", p2.stdout);
    assert_eq!(p2.json()["seq"], 2);
    let pulled2 = run(
        &host,
        &g,
        &["--json", "pull", &url, "hosts/web1", "--switch"],
    )
    .ok();
    assert_eq!(moved(&pulled2), (1, 3, 1, 99), "{}", pulled2.stdout);
    deployer.run(&["switch", &g2]).ok();
    assert_eq!(host.tree(), deployer.tree());
    assert_eq!(
        census(&t),
        counts(&[
            ("hosts", 1),
            ("manifests", 2),
            ("nodes", 7),
            ("objects", 101),
            ("signatures", 2)
        ])
    );
    // Without credentials the store refuses, and the message names it.
    let mut c = host.cmd(&["pull", &url, "hosts/web1"]);
    c.env("HOME", host.dir.path());
    for (k, _) in g.env() {
        if k != "AWS_ENDPOINT_URL" {
            c.env_remove(k);
        }
    }
    let refused = Run::from(c.output().expect("run"));
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("s3://sysgen/fleet: hosts/web1: "),
        "{}",
        refused.stderr
    );
}

/// A push to s3 killed at each named step leaves the bucket consistent
/// (no ref, so a host finds nothing to pull; no lock left behind), and the
/// rerun moves only what the killed one had not.
#[test]
fn a_push_over_s3_killed_at_each_step_leaves_the_bucket_consistent_and_a_rerun_completes() {
    let Some(g) = Garage::start(
        "a_push_over_s3_killed_at_each_step_leaves_the_bucket_consistent_and_a_rerun_completes",
    ) else {
        return;
    };
    let cases = [
        ("objects:3", (7, 4, 1, 3)),
        ("nodes:2", (0, 2, 1, 10)),
        ("manifest:1", (0, 0, 0, 10)),
        ("ref:0", (0, 0, 0, 10)),
    ];
    let deployer = TestEnv::new();
    let public = keygen(&deployer);
    let gen_id = build(&deployer, "c.json", files(10, None, "v1 "));
    deployer.run(&["switch", &gen_id]).ok();
    for (fault, rerun) in cases {
        let prefix = format!("kill-{}", fault.replace(':', "-"));
        let url = g.url(&prefix);
        let t = g.open(&prefix);
        let killed = Run::from(
            cmd(
                &deployer,
                &g,
                &["push", &gen_id, &url, "--ref", "hosts/web1"],
                Some(fault),
            )
            .output()
            .expect("run"),
        );
        assert!(
            killed.killed,
            "{fault}: the push was not killed: {killed:?}"
        );
        assert_eq!(
            t.list("hosts/").expect("list"),
            Vec::<String>::new(),
            "{fault}"
        );
        assert_eq!(
            t.list("locks/").expect("list"),
            Vec::<String>::new(),
            "{fault}"
        );
        let host = TestEnv::new();
        trust(&host, &public);
        let none = run(&host, &g, &["pull", &url, "hosts/web1"]);
        assert_eq!(none.code, Some(2), "{fault}: {}", none.stderr);
        assert!(
            none.stderr.contains("no such ref"),
            "{fault}: {}",
            none.stderr
        );
        let again = run(
            &deployer,
            &g,
            &["--json", "push", &gen_id, &url, "--ref", "hosts/web1"],
        )
        .ok();
        assert_eq!(moved(&again), rerun, "{fault}: {}", again.stdout);
        run(&host, &g, &["pull", &url, "hosts/web1", "--switch"]).ok();
        assert_eq!(host.tree(), deployer.tree(), "{fault}");
    }
}

/// Two deployers push different generations to one ref at the same time
/// (both read the ref as absent, then both try to move it): one wins, the
/// other is refused with a clear error, and hosts get the winner's.
///
/// To make both really read before either writes, the test holds the
/// ref's lock object itself until both have published their signatures
/// (the step just before reading the ref), then lets go.
#[test]
fn two_deployers_pushing_one_ref_at_once_one_wins_the_other_is_refused() {
    let Some(g) =
        Garage::start("two_deployers_pushing_one_ref_at_once_one_wins_the_other_is_refused")
    else {
        return;
    };
    let url = g.url("race");
    let t = g.open("race");
    let (a, b) = (TestEnv::new(), TestEnv::new());
    let (pa, pb) = (keygen(&a), keygen(&b));
    let ga = build(&a, "c.json", files(20, None, "from a "));
    let gb = build(&b, "c.json", files(20, None, "from b "));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let lock = "locks/hosts/web1";
    t.put(
        lock,
        format!(r#"{{"owner":"the test","expires":{}}}"#, now + 120).as_bytes(),
    )
    .expect("hold the lock");
    let spawn = |env: &TestEnv, gen_id: &str| {
        cmd(
            env,
            &g,
            &["--json", "push", gen_id, &url, "--ref", "hosts/web1"],
            None,
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn push")
    };
    let (ca, cb) = (spawn(&a, &ga), spawn(&b, &gb));
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while t.list("signatures/").expect("list").len() < 2 {
        assert!(
            std::time::Instant::now() < until,
            "the pushes did not get to the ref"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Each reads the ref right after its signature: give that GET time.
    std::thread::sleep(std::time::Duration::from_millis(500));
    t.put(
        lock,
        format!(r#"{{"owner":"the test","expires":{}}}"#, now - 1).as_bytes(),
    )
    .expect("let go");
    let ra = Run::from(ca.wait_with_output().expect("wait"));
    let rb = Run::from(cb.wait_with_output().expect("wait"));
    let (winner, loser, won_gen, won_key) = match (ra.code, rb.code) {
        (Some(0), Some(1)) => (&ra, &rb, &ga, &pa),
        (Some(1), Some(0)) => (&rb, &ra, &gb, &pb),
        _ => panic!("not one winner and one refused:\na: {ra:?}\nb: {rb:?}"),
    };
    assert_eq!(winner.json()["seq"], 1, "{}", winner.stdout);
    assert!(
        loser
            .stderr
            .contains("s3://sysgen/race: hosts/web1: changed while this command ran (another push won); run it again"),
        "{}",
        loser.stderr
    );
    assert_eq!(t.list("locks/").expect("list"), Vec::<String>::new());
    let host = TestEnv::new();
    trust(&host, won_key);
    let pulled = run(
        &host,
        &g,
        &["--json", "pull", &url, "hosts/web1", "--switch"],
    )
    .ok();
    assert_eq!(
        pulled.json()["generation"],
        won_gen.as_str(),
        "{}",
        pulled.stdout
    );
}

/// `sysgen copy` from a bucket into a host's state over ssh: the two
/// transports of this branch end to end (s3 read, ssh write); the host
/// then switches to the copied generation.
#[test]
fn copy_from_s3_into_a_host_over_ssh_then_switch_there() {
    let test = "copy_from_s3_into_a_host_over_ssh_then_switch_there";
    let Some(g) = Garage::start(test) else {
        return;
    };
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let deployer = TestEnv::new();
    let host = TestEnv::new();
    let public = keygen(&deployer);
    trust(&host, &public);
    let url = g.url("copy");
    let gen_id = build(&deployer, "c.json", files(30, None, "copied "));
    run(
        &deployer,
        &g,
        &["push", &gen_id, &url, "--ref", "roles/web"],
    )
    .ok();
    let mut c = cmd(
        &deployer,
        &g,
        &["--json", "copy", &url, &sshd.url(&host.root()), "roles/web"],
        None,
    );
    c.envs(sshd.env());
    let copied = Run::from(c.output().expect("run")).ok();
    assert_eq!(moved(&copied), (30, 4, 1, 0), "{}", copied.stdout);
    host.run(&["switch", &gen_id]).ok();
    deployer.run(&["switch", &gen_id]).ok();
    assert_eq!(host.tree(), deployer.tree());
}
