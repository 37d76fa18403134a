//! The planner, pure: what a switch and an undo plan for accounts, from
//! account files given as text.

use std::collections::BTreeMap;

use super::etc::{Etc, LiveGroup, LiveUser};
use super::plan::{Sides, plan};
use super::step::UserStep;
use crate::accounts::{Accounts, Group, User};
use crate::kind::Phase;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/sh\n";
const SHADOW: &str = "root:*:20000:0:99999:7:::\nbob:!:20000:0:99999:7:::\n";
const GROUP: &str = "root:x:0:\nusers:x:100:bob\nbob:x:1000:\n";

fn user(uid: u32, group: &str) -> User {
    User {
        uid,
        group: Some(group.to_owned()),
        groups: None,
        home: None,
        shell: None,
        comment: None,
        system: false,
        create_home: true,
        password: None,
    }
}

fn accounts(users: &[(&str, User)], groups: &[(&str, u32)]) -> Accounts {
    Accounts {
        users: users
            .iter()
            .map(|(n, u)| ((*n).to_owned(), u.clone()))
            .collect(),
        groups: groups
            .iter()
            .map(|(n, gid)| {
                let g = Group {
                    gid: *gid,
                    system: false,
                };
                ((*n).to_owned(), g)
            })
            .collect(),
    }
}

struct Case {
    old: Accounts,
    new: Accounts,
    switch: bool,
    origins_u: BTreeMap<String, LiveUser>,
    readopt_u: BTreeMap<String, LiveUser>,
}

fn run(c: &Case) -> (Vec<(Phase, String)>, Vec<String>) {
    let etc = Etc::from_texts(PASSWD, SHADOW, GROUP);
    let none_g: BTreeMap<String, LiveGroup> = BTreeMap::new();
    let ok = |_: &LiveUser, _: &User| Ok(true);
    let (steps, conflicts) = plan(&Sides {
        old: &c.old,
        new: &c.new,
        etc: &etc,
        origins_u: &c.origins_u,
        origins_g: &none_g,
        switch: c.switch,
        readopt_u: &c.readopt_u,
        readopt_g: &none_g,
        password_ok: &ok,
    })
    .expect("plan");
    let lines = steps
        .into_iter()
        .map(|(ph, s)| {
            let adopted = match &s {
                UserStep::User { origin, .. } => origin.is_some(),
                UserStep::Group { origin, .. } => origin.is_some(),
                _ => false,
            };
            (ph, format!("{s}{}", if adopted { " [origin]" } else { "" }))
        })
        .collect();
    (lines, conflicts)
}

fn bob() -> LiveUser {
    Etc::from_texts(PASSWD, SHADOW, GROUP)
        .user("bob")
        .expect("bob")
}

#[test]
fn a_switch_adopts_what_was_there_and_creates_the_rest() {
    let (steps, conflicts) = run(&Case {
        old: Accounts::default(),
        new: accounts(
            &[("bob", user(1000, "bob")), ("alice", user(1001, "alice"))],
            &[("alice", 1001), ("bob", 1000)],
        ),
        switch: true,
        origins_u: BTreeMap::new(),
        readopt_u: BTreeMap::new(),
    });
    assert!(conflicts.is_empty(), "{conflicts:?}");
    let lines: Vec<&str> = steps.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        lines,
        [
            "create group alice (gid 1001)",
            "manage group bob (gid 1000), there before [origin]",
            "create user alice (uid 1001)",
            "manage user bob (uid 1000), there before [origin]",
        ]
    );
    assert!(steps.iter().all(|(ph, _)| *ph == Phase::AddUsers));
}

#[test]
fn an_undo_adopts_nothing_and_records_again_what_its_switch_put_back() {
    let new = accounts(&[("bob", user(1000, "bob"))], &[]);
    let undo = |readopt_u| Case {
        old: Accounts::default(),
        new: new.clone(),
        switch: false,
        origins_u: BTreeMap::new(),
        readopt_u,
    };
    // Nothing differs, nothing to record: no step.
    assert_eq!(run(&undo(BTreeMap::new())).0, []);
    // The undone switch put bob back: the undo records him again.
    let (steps, _) = run(&undo(BTreeMap::from([("bob".to_owned(), bob())])));
    assert_eq!(
        steps,
        [(
            Phase::AddUsers,
            "manage user bob (uid 1000), there before [origin]".to_owned()
        )]
    );
}

#[test]
fn leaving_removes_what_sysgen_made_and_puts_back_what_was_there() {
    let old = accounts(
        &[("bob", user(1000, "bob")), ("alice", user(1001, "alice"))],
        &[("alice", 1001), ("bob", 1000)],
    );
    let (steps, _) = run(&Case {
        old,
        // alice's group stays: userdel would take it with her.
        new: accounts(&[], &[("alice", 1001)]),
        switch: true,
        origins_u: BTreeMap::from([("bob".to_owned(), bob())]),
        readopt_u: BTreeMap::new(),
    });
    let lines: Vec<(Phase, &str)> = steps.iter().map(|(p, l)| (*p, l.as_str())).collect();
    assert_eq!(
        lines,
        [
            (Phase::AddUsers, "create group alice (gid 1001)"),
            (
                Phase::RemoveUsers,
                "remove user alice, keep its home /home/alice until gc"
            ),
            (Phase::RemoveUsers, "create group alice (gid 1001)"),
            (
                Phase::RemoveUsers,
                "put back user bob as it was before sysgen"
            ),
            (Phase::RemoveUsers, "remove group bob"),
        ]
    );
}

#[test]
fn an_id_another_account_has_is_a_conflict() {
    let (_, conflicts) = run(&Case {
        old: Accounts::default(),
        new: accounts(&[("alice", user(1000, "users"))], &[("dev", 100)]),
        switch: true,
        origins_u: BTreeMap::new(),
        readopt_u: BTreeMap::new(),
    });
    assert_eq!(
        conflicts,
        [
            "group dev: gid 100 is taken by group users on the root; give dev another gid, or remove users",
            "user alice: uid 1000 is taken by user bob on the root; give alice another uid, or remove bob",
        ]
    );
}
