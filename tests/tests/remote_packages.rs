//! The `.deb` files of a generation travel with it: a host with no apt
//! source for the package installs the exact version from what it pulled,
//! and rolls back to the other version after the remote is gone, offline.
//! Real apt and dpkg in scratch Debian roots (see tests/src/packages.rs).

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use serde_json::json;
use sysgen_tests::packages::{DebEnv, Pkg};
use sysgen_tests::remote::{RemoteDir, keygen, moved, trust};
use sysgen_tests::s;

fn cfg(d: &DebEnv, name: &str, apt: &[&str], motd: &str) -> String {
    let c = d.env.config(
        name,
        json!({
            "packages": { "apt": apt },
            "files": { "/etc/motd": { "content": motd } }
        }),
    );
    d.env.run(&["--json", "build", s(&c)]).ok().json()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_pulled_generation_installs_its_packages_offline_and_rolls_back_without_the_remote() {
    let deployer = DebEnv::new();
    for v in ["1.0", "2.0"] {
        let bin = format!("#!/bin/sh\necho hello {v}\n");
        deployer.build(&Pkg {
            files: &[("/usr/bin/sg-hello", &bin)],
            ..Pkg::new("sg-hello", v)
        });
    }
    deployer.publish();
    let g1 = cfg(&deployer, "one.json", &["sg-hello=1.0"], "one\n");
    let g2 = cfg(&deployer, "two.json", &["sg-hello=2.0"], "two\n");
    // Switching fetches each .deb into the deployer's store.
    deployer.env.run(&["switch", &g1]).ok();
    let (pkgs1, tree1) = (deployer.packages(), deployer.tree());
    deployer.env.run(&["switch", &g2]).ok();
    let (pkgs2, tree2) = (deployer.packages(), deployer.tree());

    // The host's only apt source is an empty repository: it can get the
    // package from nowhere but the remote.
    let host = DebEnv::new();
    host.publish();
    let remote = RemoteDir::new();
    let url = remote.url();
    trust(&host.env, &keygen(&deployer.env));

    let p1 = deployer
        .env
        .run(&["--json", "push", &g1, &url, "--ref", "hosts/h"])
        .ok();
    // The motd and the .deb.
    assert_eq!(moved(&p1).0, 2, "{}", p1.stdout);
    assert_eq!(remote.keys_under("packages").len(), 1);
    host.env.run(&["pull", &url, "hosts/h", "--switch"]).ok();
    assert_eq!(host.packages(), pkgs1);
    assert_eq!(host.tree(), tree1);

    deployer
        .env
        .run(&["push", &g2, &url, "--ref", "hosts/h"])
        .ok();
    host.env.run(&["pull", &url, "hosts/h", "--switch"]).ok();
    assert_eq!(host.packages(), pkgs2);
    assert_eq!(host.tree(), tree2);

    std::fs::remove_dir_all(remote.path()).unwrap();
    host.env.run(&["rollback"]).ok();
    assert_eq!(host.packages(), pkgs1, "rollback without the remote");
    assert_eq!(host.tree(), tree1);
}
