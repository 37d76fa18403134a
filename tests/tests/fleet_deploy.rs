//! `sysgen deploy`: 20 simulated hosts (scratch roots behind one real
//! sshd on loopback, `--root` per host). A failing canary stops the
//! rollout with the other 19 hosts untouched, byte for byte; once fixed,
//! the rollout reaches every host, each confirmed, and a second deploy
//! of a small change moves only the new objects.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fmt::Write as _;

use serde_json::json;
use sysgen_tests::fleet as helpers;
use sysgen_tests::sshd::Sshd;
use sysgen_tests::{Run, TestEnv, dump_tree, s};

const HOSTS: usize = 20;

struct Fleet {
    sshd: Sshd,
    deployer: TestEnv,
    hosts: Vec<TestEnv>,
}

impl Fleet {
    fn new(sshd: Sshd, n: usize) -> Fleet {
        let deployer = TestEnv::new();
        let hosts = (0..n).map(|_| TestEnv::new()).collect();
        Fleet {
            sshd,
            deployer,
            hosts,
        }
    }

    fn name(i: usize) -> String {
        format!("h{i:02}")
    }

    /// The inventory: host 07 is the canary; every host runs role `web`
    /// plus a file naming it.
    fn inventory(&self, motd: &str) -> std::path::PathBuf {
        self.inventory_with(json!({ "files": {
            "/etc/motd": { "content": motd },
            "/srv/www/index.html": { "content": "<h1>fleet</h1>\n" },
        } }))
    }

    fn inventory_with(&self, role: serde_json::Value) -> std::path::PathBuf {
        let d = &self.deployer;
        d.write_cfg("roles/web.json", &role.to_string());
        let opts: Vec<String> = helpers::options(&self.sshd);
        let mut inv = format!(
            "[defaults]\nssh = \"{}\"\nssh_options = {}\nconfirm_within = \"1m\"\n",
            helpers::url(&self.sshd),
            toml_list(&opts)
        );
        for (i, h) in self.hosts.iter().enumerate() {
            let name = Fleet::name(i);
            d.write_cfg(
                &format!("hosts/{name}.json"),
                &json!({
                    "include": ["../roles/web.json"],
                    "files": { "/etc/hostname": { "content": format!("{name}\n") } },
                })
                .to_string(),
            );
            let tags = if i == 7 { "[\"canary\"]" } else { "[]" };
            writeln!(
                inv,
                "[hosts.{name}]\nconfig = \"hosts/{name}.json\"\nroot = \"{}\"\ntags = {tags}",
                h.root().display()
            )
            .unwrap();
        }
        d.write_cfg("fleet.toml", &inv)
    }

    fn deploy(&self, inventory: &std::path::Path, extra: &[&str]) -> Run {
        let bin = TestEnv::sysgen_bin();
        let mut args = vec![
            "--json",
            "deploy",
            s(inventory),
            "--remote-program",
            s(&bin),
        ];
        args.extend_from_slice(extra);
        self.deployer.run(&args)
    }

    /// Every host's whole root, its state directory included.
    fn trees(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|h| dump_tree(&h.root(), &[]))
            .collect()
    }
}

fn toml_list(v: &[String]) -> String {
    let quoted: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

fn outcomes(r: &Run) -> Vec<(String, String)> {
    r.json()["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap().to_owned(),
                h["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_failing_canary_stops_the_rollout_then_the_fixed_rollout_reaches_every_host() {
    let Some(sshd) =
        Sshd::start("a_failing_canary_stops_the_rollout_then_the_fixed_rollout_reaches_every_host")
    else {
        return;
    };
    let fleet = Fleet::new(sshd, HOSTS);
    // The canary's root has a directory where the role puts a file: its
    // switch is refused.
    fleet.hosts[7].write_root("/etc/motd/old", "x\n");
    let inv = fleet.inventory("welcome\n");
    let before = fleet.trees();

    let r = fleet.deploy(&inv, &["--parallel", "5"]).expect(1);
    let doc = r.json();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["generations"], HOSTS, "one generation per host");
    let got = outcomes(&r);
    assert_eq!(
        got[0],
        ("h07".into(), "failed".into()),
        "the canary goes first"
    );
    assert!(
        got[1..].iter().all(|(_, o)| o == "untouched"),
        "the rest is untouched: {got:?}"
    );
    assert!(doc["stopped"].as_str().unwrap().contains("canary"), "{doc}");
    let after = fleet.trees();
    for i in (0..HOSTS).filter(|&i| i != 7) {
        assert_eq!(after[i], before[i], "host {} untouched", Fleet::name(i));
    }

    // Fixed: every host gets its generation, confirmed.
    std::fs::remove_dir_all(fleet.hosts[7].at("/etc/motd")).unwrap();
    let r = fleet.deploy(&inv, &["--parallel", "5"]).ok();
    let got = outcomes(&r);
    assert!(got.iter().all(|(_, o)| o == "switched"), "{got:?}");
    for (i, h) in fleet.hosts.iter().enumerate() {
        let want = sysgen_tests::tree_with(
            &dump_tree(
                &h.root(),
                &[
                    h.state(),
                    h.at("/etc/motd"),
                    h.at("/srv"),
                    h.at("/etc/hostname"),
                ],
            ),
            &[
                &sysgen_tests::file_line(
                    "/etc/hostname",
                    0o644,
                    "0:0",
                    format!("{}\n", Fleet::name(i)).as_bytes(),
                ),
                &sysgen_tests::file_line("/etc/motd", 0o644, "0:0", b"welcome\n"),
                "/srv dir 0755 0:0",
                "/srv/www dir 0755 0:0",
                &sysgen_tests::file_line("/srv/www/index.html", 0o644, "0:0", b"<h1>fleet</h1>\n"),
            ],
        );
        assert_eq!(h.tree(), want, "host {}", Fleet::name(i));
        assert!(!h.state().join("confirm.json").exists(), "confirmed");
    }
    let first: u64 = r.json()["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["objects"].as_u64().unwrap())
        .sum();

    // A small change: only its objects move, once per host.
    let inv = fleet.inventory("welcome, again\n");
    let r = fleet.deploy(&inv, &["--parallel", "5"]).ok();
    for h in r.json()["hosts"].as_array().unwrap() {
        assert_eq!(h["outcome"], "switched", "{h}");
        assert_eq!(h["from"], 1);
        assert_eq!(h["to"], 2);
    }
    let second: u64 = r.json()["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["objects"].as_u64().unwrap())
        .sum();
    assert!(second < first, "second push moved {second}, first {first}");
    for h in &fleet.hosts {
        assert_eq!(
            std::fs::read_to_string(h.at("/etc/motd")).unwrap(),
            "welcome, again\n"
        );
    }
}

#[test]
fn bad_inventories_and_limits_exit_2_and_touch_nothing() {
    let env = TestEnv::new();
    let inv = env.write_cfg("fleet.toml", "[hosts.a]\nssh = \"ssh://a\"\n");
    let r = env.run(&["deploy", s(&inv)]).expect(2);
    assert!(r.stderr.contains("hosts.a.config"), "{}", r.stderr);
    let inv = env.write_cfg(
        "fleet.toml",
        "[hosts.a]\nssh = \"ssh://a\"\nconfig = \"a.json\"\n",
    );
    let r = env.run(&["deploy", s(&inv), "--limit", "web-*"]).expect(2);
    assert!(r.stderr.contains("no host"), "{}", r.stderr);
    let r = env
        .run(&["deploy", s(&inv), "--confirm-within", "later"])
        .expect(2);
    assert!(r.stderr.contains("confirm-within"), "{}", r.stderr);
    // A missing configuration is named with its host; nothing was built.
    let r = env.run(&["deploy", s(&inv)]).expect(2);
    assert!(r.stderr.contains("a.json"), "{}", r.stderr);
    let list = env.run(&["--json", "list"]).ok().json();
    assert_eq!(list["generations"], json!([]), "nothing was built: {list}");
}

#[test]
fn a_stopped_rollout_rolls_back_the_hosts_it_switched() {
    let Some(sshd) = Sshd::start("a_stopped_rollout_rolls_back_the_hosts_it_switched") else {
        return;
    };
    let fleet = Fleet::new(sshd, 6);
    let v1 = fleet.inventory_with(json!({ "files": { "/etc/motd": { "content": "v1\n" } } }));
    fleet.deploy(&v1, &["--parallel", "2"]).ok();
    let on_v1: Vec<String> = fleet.hosts.iter().map(TestEnv::tree).collect();
    // v2 adds a file where host 04 has a directory: its switch is refused.
    fleet.hosts[4].write_root("/etc/extra/x", "x\n");
    let on_v1_04 = fleet.hosts[4].tree();
    let v2 = fleet.inventory_with(json!({ "files": {
        "/etc/motd": { "content": "v2\n" },
        "/etc/extra": { "content": "e\n" },
    } }));
    // Batches: [h00 (canary)], [h01 h02], [h03 h04], [h05].
    let r = fleet
        .deploy(&v2, &["--parallel", "2", "--rollback-on-stop"])
        .expect(1);
    let got = outcomes(&r);
    let want: Vec<(String, String)> = [
        ("h00", "rolled-back"),
        ("h01", "rolled-back"),
        ("h02", "rolled-back"),
        ("h03", "rolled-back"),
        ("h04", "failed"),
        ("h05", "untouched"),
    ]
    .iter()
    .map(|(h, o)| (h.to_string(), o.to_string()))
    .collect();
    assert_eq!(got, want, "{}", r.stdout);
    let failed = &r.json()["hosts"][4];
    assert_eq!(failed["failed_step"], "switch");
    assert!(
        failed["error"].as_str().unwrap().contains("/etc/extra"),
        "the host's own reason: {failed}"
    );
    for (i, h) in fleet.hosts.iter().enumerate() {
        let want = if i == 4 { &on_v1_04 } else { &on_v1[i] };
        assert_eq!(&h.tree(), want, "host {} is back on v1", Fleet::name(i));
    }

    // v1 again, for people: every host already runs it. The table, whole;
    // each host's line went to stderr as it finished.
    let bin = TestEnv::sysgen_bin();
    let v1 = fleet.inventory_with(json!({ "files": { "/etc/motd": { "content": "v1\n" } } }));
    let r = fleet
        .deployer
        .run(&["deploy", s(&v1), "--remote-program", s(&bin)])
        .ok();
    let mut want = String::from(
        "built 6 generations for 6 hosts\n\
         host  outcome       from     to   objects         bytes  error\n",
    );
    for i in 0..6 {
        want.push_str(&format!(
            "h0{i}   unchanged        1      1         0             0\n"
        ));
    }
    want.push_str("0 switched, 6 unchanged, 0 failed, 0 rolled back, 0 untouched\n");
    assert_eq!(r.stdout, want);
    for i in 0..6 {
        assert!(
            r.stderr
                .contains(&format!("h0{i}: unchanged (1 -> 1, 0 objects, 0 bytes, ")),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn secrets_travel_encrypted_to_each_host_key_and_the_wrong_key_fails_the_push() {
    let Some(sshd) = Sshd::start("secrets_travel_encrypted_to_each_host_key") else {
        return;
    };
    let fleet = Fleet::new(sshd, 2);
    let mut keys = Vec::new();
    for h in &fleet.hosts {
        std::fs::create_dir_all(h.at("/etc/ssh")).unwrap();
        let key = h.at("/etc/ssh/ssh_host_ed25519_key");
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(st.success());
        keys.push(format!("{}.pub", key.display()));
    }
    let token = "tok-fleet-Wq3Zr8Ls\n";
    let inv = fleet.inventory_with(json!({ "files": {
        "/etc/token": { "content": token, "secret": true },
    } }));
    // Each host's recipient is its own key; then host 01 gets 00's.
    let plain = std::fs::read_to_string(&inv).unwrap();
    let with_recipients = |r: [&str; 2]| {
        let mut text = plain.clone();
        for (i, k) in r.iter().enumerate() {
            let name = Fleet::name(i);
            text = text.replace(
                &format!("[hosts.{name}]\n"),
                &format!("[hosts.{name}]\nrecipient = \"{k}\"\n"),
            );
        }
        fleet.deployer.write_cfg("fleet.toml", &text)
    };
    let wrong = with_recipients([&keys[0], &keys[0]]);
    let before_01 = fleet.hosts[1].tree();
    let r = fleet.deploy(&wrong, &["--canary", "0"]).expect(1);
    let got = outcomes(&r);
    assert_eq!(got[0].1, "switched", "{}", r.stdout);
    assert_eq!(got[1].1, "failed", "{}", r.stdout);
    assert_eq!(r.json()["hosts"][1]["failed_step"], "push");
    // Its state was opened (and so made) by `sysgen serve`; nothing else.
    assert_eq!(
        fleet.hosts[1].tree(),
        sysgen_tests::tree_with(&before_01, &["/var dir 0755 0:0", "/var/lib dir 0755 0:0"]),
        "a secret it cannot decrypt left host 01 as it was"
    );
    let list = fleet.hosts[1].run(&["--json", "list"]).ok().json();
    assert_eq!(list["generations"], json!([]), "{list}");

    let right = with_recipients([&keys[0], &keys[1]]);
    let r = fleet.deploy(&right, &[]).ok();
    assert!(
        outcomes(&r)
            .iter()
            .all(|(_, o)| o == "switched" || o == "unchanged")
    );
    for h in &fleet.hosts {
        let line = sysgen_tests::file_line("/etc/token", 0o600, "0:0", token.as_bytes());
        assert!(h.tree().lines().any(|l| l == line), "{}", h.tree());
    }
    // Nothing the deploy printed holds the secret.
    assert!(!r.stdout.contains(token.trim()) && !r.stderr.contains(token.trim()));
}
