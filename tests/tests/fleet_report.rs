//! Pull agents' reports: `sysgen pull --switch --report` (what
//! sysgen-pull.service runs) writes reports/HOST to the remote, and
//! `sysgen fleet status REMOTE` summarizes every host: its generation,
//! drift, a failed pull; exit 1 unless all are well.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use serde_json::json;
use sysgen_tests::remote::{RemoteDir, keygen, trust};
use sysgen_tests::{TestEnv, s};

#[test]
fn pull_agents_report_and_fleet_status_sums_them_up() {
    let deployer = TestEnv::new();
    let remote = RemoteDir::new();
    let hosts: Vec<TestEnv> = (0..3).map(|_| TestEnv::new()).collect();
    let pubkey = keygen(&deployer);
    for h in &hosts {
        trust(h, &pubkey);
    }
    let c = deployer.config(
        "web.json",
        json!({ "files": { "/etc/motd": { "content": "fleet\n" } } }),
    );
    let id = deployer.run(&["--json", "build", s(&c)]).ok().json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for name in ["web-0", "web-1"] {
        deployer
            .run(&[
                "push",
                &id,
                &remote.url(),
                "--ref",
                &format!("hosts/{name}"),
            ])
            .ok();
    }
    // Two hosts pull and switch; the third's ref does not exist.
    for (i, h) in hosts.iter().enumerate() {
        let r = h.run(&[
            "pull",
            "--switch",
            "--report",
            &remote.url(),
            &format!("hosts/web-{i}"),
        ]);
        assert_eq!(r.code, Some(if i < 2 { 0 } else { 2 }), "{r:?}");
    }
    assert_eq!(
        remote.keys_under("reports"),
        ["reports/web-0", "reports/web-1", "reports/web-2"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    // Drift on web-1.
    hosts[1].write_root("/etc/motd", "changed by hand\n");
    hosts[1]
        .run(&["pull", "--report", &remote.url(), "hosts/web-1"])
        .ok();

    let st = deployer
        .run(&["--json", "fleet", "status", &remote.url()])
        .expect(1);
    let doc = st.json();
    let hosts_doc = doc["hosts"].as_array().unwrap();
    let row = |i: usize| &hosts_doc[i];
    assert_eq!(hosts_doc.len(), 3);
    assert_eq!(row(0)["host"], "web-0");
    assert_eq!(row(0)["active"]["id"], id.as_str());
    assert_eq!(row(0)["drift"], json!([]));
    assert_eq!(row(0)["failure"], json!(null));
    assert_eq!(row(1)["active"]["number"], 1);
    assert_eq!(row(1)["drift"].as_array().unwrap().len(), 1, "{doc}");
    assert!(
        row(1)["drift"][0]
            .as_str()
            .unwrap()
            .starts_with("/etc/motd")
    );
    assert_eq!(row(2)["active"], json!(null));
    assert!(
        row(2)["failure"].as_str().unwrap().contains("hosts/web-2"),
        "{doc}"
    );
    assert_eq!(doc["generations"][&id], 2);
    assert_eq!(doc["generations"]["none"], 1);
    // The table for people says the same.
    let table = deployer
        .run(&["fleet", "status", &remote.url()])
        .expect(1)
        .stdout;
    assert!(table.contains("web-2"), "{table}");

    // All well once web-1 is repaired and web-2 reports a good pull.
    hosts[1].run(&["repair"]).ok();
    hosts[1]
        .run(&["pull", "--report", &remote.url(), "hosts/web-1"])
        .ok();
    deployer
        .run(&["push", &id, &remote.url(), "--ref", "hosts/web-2"])
        .ok();
    hosts[2]
        .run(&["pull", "--switch", "--report", &remote.url(), "hosts/web-2"])
        .ok();
    let doc = deployer
        .run(&["--json", "fleet", "status", &remote.url()])
        .ok()
        .json();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["generations"][&id], 3);
    // Stale: reports older than --stale-after.
    let later = deployer
        .cmd(&[
            "--json",
            "fleet",
            "status",
            &remote.url(),
            "--stale-after",
            "1m",
        ])
        .env("SYSGEN_NOW", (now() + 3600).to_string())
        .output()
        .unwrap();
    assert_eq!(later.status.code(), Some(1));
    let later: serde_json::Value = serde_json::from_slice(&later.stdout).unwrap();
    assert_eq!(later["stale"], json!(["web-0", "web-1", "web-2"]));
}

#[test]
fn fleet_status_of_a_bad_remote_exits_2() {
    let env = TestEnv::new();
    let r = env.run(&["fleet", "status", "gopher://x"]).expect(2);
    assert!(r.stderr.contains("gopher://x"), "{}", r.stderr);
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
