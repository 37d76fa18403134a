#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::collections::BTreeMap;

use sysgen_store::Hash;

use super::*;
use crate::kind::Phase;
use crate::manifest::Entry;

fn p(s: &str) -> EntryPath {
    EntryPath::parse(s).unwrap()
}

fn file(c: &str) -> Entry {
    Entry::File {
        hash: Hash::of(c.as_bytes()),
        size: c.len() as u64,
        mode: 0o644,
        uid: None,
        gid: None,
        secret: false,
        xattrs: Default::default(),
        link: None,
    }
}

fn unit(enable: bool, restart_on: &[&str], reload_on: &[&str], check: bool) -> Unit {
    Unit {
        enable,
        restart_on: restart_on.iter().map(|s| p(s)).collect(),
        reload_on: reload_on.iter().map(|s| p(s)).collect(),
        check: check.then(|| Check {
            command: "true".into(),
            timeout_secs: 3,
        }),
    }
}

fn services(units: &[(&str, Unit)]) -> Services {
    Services(
        units
            .iter()
            .map(|(n, u)| ((*n).to_owned(), u.clone()))
            .collect(),
    )
}

fn changed(path: &str) -> Change {
    Change::changed(p(path), file("a"), file("b"))
}

fn text(steps: &[ServiceStep]) -> Vec<String> {
    steps.iter().map(ToString::to_string).collect()
}

fn origins(list: &[(&str, bool)]) -> BTreeMap<String, bool> {
    list.iter().map(|(u, w)| ((*u).to_owned(), *w)).collect()
}

#[test]
fn restart_exactly_when_a_watched_path_changed() {
    let s = services(&[(
        "nginx.service",
        unit(true, &["/etc/nginx"], &["/etc/nginx.env"], true),
    )]);
    // (changes, the up steps expected)
    let cases: Vec<(Vec<Change>, Vec<&str>)> = vec![
        (vec![changed("/etc/other")], vec![]),
        (vec![changed("/etc/nginxx")], vec![]),
        (
            vec![changed("/etc/nginx/nginx.conf")],
            vec![
                "restart nginx.service: /etc/nginx/nginx.conf changed",
                "check nginx.service with `true` (timeout 3s): it was restarted",
            ],
        ),
        (
            vec![Change::Removed(p("/etc/nginx/sites/a"), file("x"))],
            vec![
                "restart nginx.service: /etc/nginx/sites/a changed",
                "check nginx.service with `true` (timeout 3s): it was restarted",
            ],
        ),
        (
            vec![changed("/etc/nginx.env")],
            vec!["reload nginx.service: /etc/nginx.env changed"],
        ),
        (
            // Restarted, so not also reloaded.
            vec![changed("/etc/nginx.env"), changed("/etc/nginx/a")],
            vec![
                "restart nginx.service: /etc/nginx/a changed",
                "check nginx.service with `true` (timeout 3s): it was restarted",
            ],
        ),
    ];
    for (changes, want) in cases {
        let got = plan(&s, &s, &changes, &BTreeMap::new(), true);
        assert!(got.down.is_empty(), "{changes:?}: {:?}", got.down);
        assert_eq!(text(&got.up), want, "{changes:?}");
    }
}

#[test]
fn unit_files_and_drop_ins_reload_systemd_and_restart_their_unit() {
    let s = services(&[
        ("getty@tty1.service", unit(true, &[], &[], false)),
        ("app.service", unit(true, &[], &[], false)),
        ("off.service", unit(false, &[], &[], false)),
    ]);
    let changes = vec![
        Change::Added(p("/etc/systemd/system/getty@.service.d/x.conf"), file("x")),
        changed("/lib/systemd/system/app.service"),
        changed("/etc/systemd/system/off.service"),
        // Not a unit file: an enablement link, and a stray file.
        Change::Added(
            p("/etc/systemd/system/multi-user.target.wants/zz.service"),
            file("l"),
        ),
        Change::Added(p("/etc/systemd/system/README"), file("r")),
    ];
    let got = plan(&s, &s, &changes, &BTreeMap::new(), true);
    assert_eq!(
        text(&got.up),
        [
            "daemon-reload: unit files changed",
            "restart app.service: /lib/systemd/system/app.service changed",
            "restart getty@tty1.service: /etc/systemd/system/getty@.service.d/x.conf changed",
            "restart off.service if it is running: /etc/systemd/system/off.service changed",
        ]
    );
}

#[test]
fn stop_and_disable_come_before_everything_and_only_for_what_sysgen_enabled() {
    let old = services(&[
        ("ours.service", unit(true, &[], &[], false)),
        ("admins.service", unit(true, &[], &[], false)),
        ("vendor.service", unit(false, &[], &[], false)),
        ("unknown.service", unit(true, &[], &[], false)),
    ]);
    let new = Services::default();
    let o = origins(&[
        ("ours.service", false),
        ("admins.service", true),
        ("vendor.service", true),
    ]);
    let changes = vec![Change::Removed(
        p("/etc/systemd/system/ours.service"),
        file("u"),
    )];
    let got = plan(&old, &new, &changes, &o, true);
    assert_eq!(
        text(&got.down),
        [
            "stop ours.service: left the configuration",
            "disable ours.service: left the configuration; sysgen enabled it",
        ]
    );
    // The admin's unit stays enabled; the unit of unknown origin is left
    // alone; the vendor's unit that sysgen disabled comes back.
    assert_eq!(
        text(&got.up),
        [
            "enable vendor.service: left the configuration; it was enabled before sysgen",
            "daemon-reload: unit files changed",
            "start vendor.service: it was enabled before sysgen",
        ]
    );
}

#[test]
fn a_removed_unit_file_stops_its_unit_first() {
    let s = services(&[("keep.service", unit(true, &[], &[], false))]);
    let changes = vec![
        Change::Removed(p("/etc/systemd/system/gone.service"), file("u")),
        Change::Removed(p("/etc/systemd/system/gone.service.d/a.conf"), file("u")),
    ];
    let got = plan(&s, &s, &changes, &BTreeMap::new(), true);
    assert_eq!(
        text(&got.down),
        ["stop gone.service: its unit file /etc/systemd/system/gone.service is removed"]
    );
    assert_eq!(text(&got.up), ["daemon-reload: unit files changed"]);
}

#[test]
fn new_units_adopt_their_origin_and_start_with_their_check() {
    let old = Services::default();
    let new = services(&[
        ("a.service", unit(true, &["/etc/a"], &[], true)),
        ("b.service", unit(false, &[], &[], true)),
    ]);
    let o = origins(&[("a.service", false), ("b.service", true)]);
    let got = plan(&old, &new, &[changed("/etc/a")], &o, true);
    assert_eq!(
        got.down,
        [
            ServiceStep::Runtime {
                action: Action::Stop {
                    unit: "b.service".into()
                },
                why: "declared with enable: false".into(),
                skipped: false
            },
            ServiceStep::Disable {
                unit: "b.service".into(),
                why: "declared with enable: false".into(),
                adopt: Some(true)
            },
        ]
    );
    assert_eq!(
        text(&got.up),
        [
            "enable a.service: newly declared",
            "daemon-reload: enablement changed",
            "start a.service: newly enabled",
            "check a.service with `true` (timeout 3s): it was started",
        ]
    );
    assert_eq!(got.up[0].adopts(), Some(("a.service", false)));
}

#[test]
fn without_systemd_every_runtime_step_is_skipped_and_enablement_is_not() {
    let new = services(&[("a.service", unit(true, &[], &[], true))]);
    let got = plan(&Services::default(), &new, &[], &BTreeMap::new(), false);
    assert_eq!(
        text(&got.up),
        [
            "enable a.service: newly declared",
            "skip daemon-reload: enablement changed (systemd is not running on this root)",
            "skip start a.service: newly enabled (systemd is not running on this root)",
            "skip check a.service with `true` (timeout 3s): it was started (systemd is not running on this root)",
        ]
    );
    assert!(!got.up[0].is_skipped() && got.up[1].is_skipped());
}

#[test]
fn phases_put_down_first_and_up_last_and_undo_knows_the_adopted_origins() {
    let planned = plan(
        &services(&[("x.service", unit(true, &[], &[], false))]),
        &services(&[("y.service", unit(true, &[], &[], false))]),
        &[],
        &origins(&[("x.service", false), ("y.service", false)]),
        true,
    );
    let steps = kind::steps(planned);
    let got: Vec<(Phase, String)> = steps.iter().map(|(ph, s)| (*ph, s.to_string())).collect();
    let want = [
        (Phase::Stop, "stop x.service: left the configuration"),
        (
            Phase::Stop,
            "disable x.service: left the configuration; sysgen enabled it",
        ),
        (Phase::Start, "enable y.service: newly declared"),
        (Phase::Start, "daemon-reload: enablement changed"),
        (Phase::Start, "start y.service: newly enabled"),
    ];
    assert_eq!(got, want.map(|(ph, s)| (ph, s.to_owned())));
    let undone: Vec<&ServiceStep> = steps.iter().map(|(_, s)| s).collect();
    assert_eq!(
        undo_origins(BTreeMap::new(), &undone),
        origins(&[("y.service", false)])
    );
}
