//! A damaged or deleted store (issue 11, items 5 and 6): a damaged pack
//! costs only its own objects, a plan that needs one is refused before its
//! journal, `verify --store` names who needs what is lost, and `gc` is the
//! way out; on real temporary roots.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its message"
)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::json;
use sysgen_tests::{TestEnv, entries_under, s, stored_frame};

/// Generation `i`: one file shared by all, one changed, one of its own.
fn config(env: &TestEnv, i: u32) -> PathBuf {
    env.config(
        &format!("c{i}.json"),
        json!({
            "files": {
                "/etc/common.conf": { "content": "shared by every generation\n" },
                "/etc/gen.conf": { "content": format!("generation {i}\n") },
                format!("/etc/only-{i}"): { "content": format!("only in {i}\n") },
                "/etc/app/token": { "content": format!("token of {i}\n"), "secret": true }
            }
        }),
    )
}

/// The public pack that holds `content`.
fn pack_holding(env: &TestEnv, content: &[u8]) -> PathBuf {
    let frame = stored_frame(content);
    entries_under(&env.state().join("store/objects/pack"))
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| {
            p.extension().is_some_and(|e| e == "pack")
                && fs::read(p)
                    .unwrap()
                    .windows(frame.len())
                    .any(|w| w == frame.as_slice())
        })
        .unwrap_or_else(|| panic!("no pack holds {content:?}"))
}

/// Flips a byte in the middle of `path` (a pack or its index).
fn flip(path: &std::path::Path, at: impl FnOnce(usize) -> usize) {
    let mut bytes = fs::read(path).unwrap();
    let i = at(bytes.len());
    bytes[i] ^= 0x55;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(path, &bytes).unwrap();
}

fn stem(pack: &std::path::Path) -> String {
    pack.file_stem().unwrap().to_string_lossy().into_owned()
}

/// Three generations; generation 1's pack (which also holds the file all
/// three share) gets a damaged index. Returns that pack.
fn three_with_damaged_first_pack(env: &TestEnv) -> PathBuf {
    for i in 1..=3 {
        env.switch(&config(env, i));
    }
    let pack = pack_holding(env, b"only in 1\n");
    flip(&pack.with_extension("idx"), |n| n / 2);
    pack
}

#[test]
fn a_damaged_index_refuses_only_the_plans_that_need_its_objects_before_any_journal() {
    let env = TestEnv::new();
    let pack = three_with_damaged_first_pack(&env);
    let before = env.tree();

    // Rollback to generation 1 needs /etc/only-1, in the damaged pack:
    // refused before the journal, nothing changed, every path named.
    let r = env.run(&["rollback", "--to", "1"]).expect(1);
    assert!(r.stderr.contains("nothing was changed"), "{}", r.stderr);
    assert!(r.stderr.contains("/etc/only-1"), "{}", r.stderr);
    assert!(r.stderr.contains("/etc/gen.conf"), "{}", r.stderr);
    assert!(r.stderr.contains(&stem(&pack)), "{}", r.stderr);
    assert!(r.stderr.contains("sysgen gc"), "{}", r.stderr);
    assert!(!r.stderr.contains("token of"), "{}", r.stderr);
    assert!(!env.state().join("journal.json").exists());
    assert_eq!(env.tree(), before);

    // Everything else works: the other packs load, and a plan that reads
    // only their objects runs (common.conf, in the damaged pack, is
    // unchanged between 3 and 2, so no step reads it).
    env.run(&["list"]).ok();
    env.run(&["status"]).ok();
    env.run(&["verify"]).ok();
    env.run(&["rollback", "--to", "2"]).ok();
    let two = env.tree();
    // (Not `switch` of the configuration: its build would store the shared
    // file again, a repair of its own.)
    env.run(&["rollback", "--to", "3"]).ok();

    // verify --store names the pack, the generations and the paths.
    let v = env.run(&["verify", "--store"]).expect(1);
    assert!(
        v.stdout
            .contains(&format!("damaged: store pack {}", pack.display())),
        "{}",
        v.stdout
    );
    assert!(
        v.stdout.contains(
            "unreadable: /etc/only-1 (generation 1): its content is in no readable place"
        ),
        "{}",
        v.stdout
    );
    assert!(
        v.stdout
            .contains("unreadable: /etc/common.conf (generations 1, 2, 3)"),
        "{}",
        v.stdout
    );
    // The secret area's pack is whole: no secret file is lost.
    assert!(!v.stdout.contains("secret"), "{}", v.stdout);
    assert!(
        v.stdout.contains("generations 1, 2, 3 need"),
        "{}",
        v.stdout
    );
    let j = env.run(&["--json", "verify", "--store"]).expect(1).json();
    assert_eq!(j["ok"], false);
    assert_eq!(j["verify"]["affected_generations"], json!([1, 2, 3]));

    // The way out: gc moves the pack aside and salvages its frames (only
    // its index was damaged), so nothing is lost.
    let g = env.run(&["gc"]).ok();
    assert!(
        g.stdout.contains("moved the damaged store pack"),
        "{}",
        g.stdout
    );
    let aside = env.state().join("store/damaged");
    assert!(
        aside
            .join(format!("objects-{}.pack", stem(&pack)))
            .is_file()
    );
    assert!(aside.join(format!("objects-{}.idx", stem(&pack))).is_file());
    assert!(!pack.exists());
    env.run(&["verify", "--store"]).ok();
    env.run(&["rollback", "--to", "2"]).ok();
    assert_eq!(env.tree(), two);
    env.run(&["rollback", "--to", "1"]).ok();
    assert_eq!(
        fs::read_to_string(env.at("/etc/only-1")).unwrap(),
        "only in 1\n"
    );
}

#[test]
fn what_gc_cannot_salvage_is_put_back_from_the_root_or_stays_named() {
    let env = TestEnv::new();
    let pack = three_with_damaged_first_pack(&env);
    // Its data too: the frames of /etc/only-1 and of the shared file.
    for content in [&b"only in 1\n"[..], b"shared by every generation\n"] {
        let frame = stored_frame(content);
        let bytes = fs::read(&pack).unwrap();
        let at = bytes
            .windows(frame.len())
            .position(|w| w == frame.as_slice())
            .unwrap();
        flip(&pack, |_| at + frame.len() / 2);
    }
    let g = env.run(&["gc"]).ok();
    // common.conf is on the root, unchanged: put back from there.
    assert!(
        g.stdout.contains("put back 1 from the root"),
        "{}",
        g.stdout
    );
    let v = env.run(&["verify", "--store"]).expect(1);
    assert!(!v.stdout.contains("damaged: store pack"), "{}", v.stdout);
    assert!(!v.stdout.contains("/etc/common.conf"), "{}", v.stdout);
    assert!(
        v.stdout.contains(
            "unreadable: /etc/only-1 (generation 1): its content is missing from the store"
        ),
        "{}",
        v.stdout
    );
    let before = env.tree();
    env.run(&["rollback", "--to", "1"]).expect(1);
    assert!(!env.state().join("journal.json").exists());
    assert_eq!(env.tree(), before);
    // Deleting the generation that needs it ends the damage.
    env.run(&["gc", "--keep", "2"]).ok();
    env.run(&["verify", "--store"]).ok();
}

#[test]
fn recover_rollback_reads_nothing_from_a_damaged_pack_it_does_not_need() {
    let env = TestEnv::new();
    env.switch(&config(&env, 1));
    env.switch(&config(&env, 2));
    let two = env.tree();
    let r = env.run_with_fault(1, &["switch", s(&config(&env, 3))]);
    assert!(r.killed, "{r:?}", r = r.stderr);
    assert!(env.state().join("journal.json").exists());
    flip(
        &pack_holding(&env, b"only in 1\n").with_extension("idx"),
        |n| n / 2,
    );
    env.run(&["recover", "--rollback"]).ok();
    assert_eq!(env.tree(), two);
    assert!(!env.state().join("journal.json").exists());
}

#[test]
fn verify_store_with_the_store_deleted_names_every_generation_and_path() {
    let env = TestEnv::new();
    env.switch(&config(&env, 1));
    env.switch(&config(&env, 2));
    fs::remove_dir_all(env.state().join("store")).unwrap();
    let v = env.run(&["verify", "--store"]).expect(1);
    for line in [
        "unreadable: /etc/common.conf (generations 1, 2): its content is missing from the store",
        "unreadable: /etc/gen.conf (generations 1, 2): its content is missing from the store",
        "unreadable: /etc/only-1 (generation 1): its content is missing from the store",
        "unreadable: /etc/only-2 (generation 2): its content is missing from the store",
        "unreadable: 1 secret files of the kept generations (not named: they are secret)",
        "the root matches generation 2 (",
        "but the store cannot give what generations 1, 2 need",
    ] {
        assert!(v.stdout.contains(line), "{line}\n{}", v.stdout);
    }
    assert!(!v.stdout.contains("token"), "{}", v.stdout);
    // Read-only: nothing was made again.
    assert!(!env.state().join("store").exists());
}
