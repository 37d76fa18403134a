//! The s3:// transport against a real S3 server (Garage on loopback):
//! every operation of the Transport trait compared whole, refs racing
//! between deployers, the lock protocol's expiry, `has` by listing, a
//! store that does not answer. Push and pull: `remote_s3_push.rs`.

use std::sync::{Arc, Barrier};

use sysgen_remote::s3::{Atomicity, LockTiming, S3Options};
use sysgen_remote::{Swap, Transport};
use sysgen_tests::s3::Garage;

fn keys(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn every_operation_of_the_transport_on_a_real_s3_server() {
    let Some(g) = Garage::start("every_operation_of_the_transport_on_a_real_s3_server") else {
        return;
    };
    let t = g.open("fleet/a");
    assert_eq!(t.describe(), "s3://sysgen/fleet/a");
    t.put("objects/aa/one", b"1").expect("put");
    t.put("objects/ab/two", b"22").expect("put");
    t.put("objects/ab/two", b"22")
        .expect("the same bytes again change nothing");
    t.put("nodes/n1", b"node").expect("put");
    assert_eq!(t.get("objects/ab/two").expect("get"), Some(b"22".to_vec()));
    assert_eq!(t.get("objects/ab/none").expect("get"), None);
    // has: in order, a batch larger than the requests kept in flight.
    let mut batch = Vec::new();
    let mut want = Vec::new();
    for i in 0..100 {
        if i % 2 == 0 {
            t.put(&format!("objects/{i:02}/x"), &[i as u8])
                .expect("put");
        }
        batch.push(format!("objects/{i:02}/x"));
        want.push(i % 2 == 0);
    }
    assert_eq!(t.has(&batch).expect("has"), want);
    // list: by string prefix, sorted, relative to the URL's prefix.
    assert_eq!(
        t.list("objects/a").expect("list"),
        keys(&["objects/aa/one", "objects/ab/two"])
    );
    assert_eq!(t.list("nodes/").expect("list"), keys(&["nodes/n1"]));
    assert_eq!(t.list("refs/").expect("list"), Vec::<String>::new());
    // Another prefix of the same bucket sees none of it.
    let other = g.open("fleet/b");
    assert_eq!(other.list("").expect("list"), Vec::<String>::new());
    assert_eq!(other.get("nodes/n1").expect("get"), None);
    // The bucket without a prefix sees the prefixed keys under their
    // full names.
    let whole = g.open("");
    assert_eq!(whole.describe(), "s3://sysgen/");
    assert_eq!(
        whole.get("fleet/a/nodes/n1").expect("get"),
        Some(b"node".to_vec())
    );
    assert_eq!(
        whole.list("fleet/a/n").expect("list"),
        keys(&["fleet/a/nodes/n1"])
    );
    // swap: create, move, refuse a stale expectation (reporting what is
    // there), refuse creating what exists.
    let r = "refs/hosts/web1";
    assert_eq!(t.swap(r, None, b"gen1").expect("swap"), Swap::Done);
    assert_eq!(t.swap(r, Some(b"gen1"), b"gen2").expect("swap"), Swap::Done);
    assert_eq!(
        t.swap(r, Some(b"gen1"), b"gen3").expect("swap"),
        Swap::Lost(Some(b"gen2".to_vec()))
    );
    assert_eq!(
        t.swap(r, None, b"gen3").expect("swap"),
        Swap::Lost(Some(b"gen2".to_vec()))
    );
    assert_eq!(
        t.swap("refs/hosts/none", Some(b"gen1"), b"x")
            .expect("swap"),
        Swap::Lost(None)
    );
    assert_eq!(t.get(r).expect("get"), Some(b"gen2".to_vec()));
    // Garage ignores If-None-Match and If-Match on PUT: the probe finds
    // out, and swaps take the lock object (which is gone after each).
    assert_eq!(t.atomicity().expect("probe"), Atomicity::LockObject);
    assert_eq!(t.list("locks/").expect("list"), Vec::<String>::new());
    // Bad keys are refused before any request, naming the key.
    let relative = "not a relative key of /-separated names (no empty, . or .. parts)";
    assert_eq!(
        t.get("").expect_err("refused").to_string(),
        "s3://sysgen/fleet/a: an empty key"
    );
    for bad in ["/abs", "a//b", "a/../b", "./a"] {
        let e = t.get(bad).expect_err("refused");
        assert_eq!(
            e.to_string(),
            format!("s3://sysgen/fleet/a: {bad}: {relative}")
        );
    }
}

#[test]
fn wrong_credentials_and_a_missing_bucket_fail_naming_the_remote() {
    let Some(g) = Garage::start("wrong_credentials_and_a_missing_bucket_fail_naming_the_remote")
    else {
        return;
    };
    let mut opts = g.options();
    for (k, v) in &mut opts.vars {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = "0".repeat(64);
        }
    }
    let t = sysgen_remote::s3::open(&g.url("p"), &opts).expect("open makes no request");
    let e = t.get("refs/x").expect_err("refused");
    assert!(e.to_string().starts_with("s3://sysgen/p: refs/x: "), "{e}");
    let t = sysgen_remote::s3::open("s3://no-such-bucket/p", &g.options()).expect("open");
    let e = t.put("objects/x", b"x").expect_err("no bucket");
    assert!(
        e.to_string()
            .starts_with("s3://no-such-bucket/p: objects/x: "),
        "{e}"
    );
    for bad in ["s3://", "s3:///p", "http://x/y", "s3://b/a/../c"] {
        assert!(sysgen_remote::s3::open(bad, &g.options()).is_err(), "{bad}");
    }
}

/// Deployers in separate transports (as separate hosts would be) move
/// one ref at the same instant: exactly one wins each round; every other
/// is told what the winner wrote, and nothing is lost or mixed.
#[test]
fn racing_deployers_on_one_ref_one_wins_the_others_are_refused() {
    let Some(g) = Garage::start("racing_deployers_on_one_ref_one_wins_the_others_are_refused")
    else {
        return;
    };
    const N: usize = 4;
    let deployers: Vec<_> = (0..N).map(|_| Arc::new(g.open("race"))).collect();
    let r = "refs/channels/stable";
    let mut expected: Option<Vec<u8>> = None;
    for round in 0..3 {
        let barrier = Arc::new(Barrier::new(N));
        let threads: Vec<_> = deployers
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let (t, b, exp) = (t.clone(), barrier.clone(), expected.clone());
                std::thread::spawn(move || {
                    let new = format!("round {round} by deployer {i}").into_bytes();
                    b.wait();
                    (new.clone(), t.swap(r, exp.as_deref(), &new).expect("swap"))
                })
            })
            .collect();
        let results: Vec<_> = threads
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        let winners: Vec<_> = results
            .iter()
            .filter(|(_, s)| *s == Swap::Done)
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let winner = winners[0].clone();
        for (_, s) in &results {
            if *s != Swap::Done {
                assert_eq!(*s, Swap::Lost(Some(winner.clone())), "round {round}");
            }
        }
        assert_eq!(deployers[0].get(r).expect("get"), Some(winner.clone()));
        expected = Some(winner);
    }
    assert_eq!(
        deployers[0].list("locks/").expect("list"),
        Vec::<String>::new()
    );
}

/// The lock object: one held by a live deployer makes a swap wait, then
/// give up with a message naming the lock; one whose owner died (expired)
/// is taken over.
#[test]
fn a_held_lock_refuses_after_waiting_and_an_expired_one_is_taken_over() {
    let Some(g) =
        Garage::start("a_held_lock_refuses_after_waiting_and_an_expired_one_is_taken_over")
    else {
        return;
    };
    let opts = S3Options {
        lock: LockTiming {
            ttl: std::time::Duration::from_secs(10),
            settle: std::time::Duration::from_millis(100),
            wait: std::time::Duration::from_secs(1),
        },
        ..g.options()
    };
    let t = sysgen_remote::s3::open(&g.url("locks"), &opts).expect("open");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let lock = "locks/refs/hosts/h";
    let held = format!(r#"{{"owner":"someone-else","expires":{}}}"#, now + 3600);
    t.put(lock, held.as_bytes()).expect("put lock");
    let e = t.swap("refs/hosts/h", None, b"g1").expect_err("locked");
    assert!(
        e.to_string().starts_with(&format!(
            "s3://sysgen/locks: {lock}: locked by another deployer (someone-else) for "
        )),
        "{e}"
    );
    assert_eq!(t.get("refs/hosts/h").expect("get"), None, "nothing written");
    assert_eq!(
        t.get(lock).expect("get"),
        Some(held.into_bytes()),
        "not ours to delete"
    );
    let dead = format!(r#"{{"owner":"someone-else","expires":{}}}"#, now - 1);
    t.put(lock, dead.as_bytes()).expect("put lock");
    assert_eq!(
        t.swap("refs/hosts/h", None, b"g1").expect("swap"),
        Swap::Done
    );
    assert_eq!(t.get("refs/hosts/h").expect("get"), Some(b"g1".to_vec()));
    assert_eq!(t.get(lock).expect("get"), None, "released");
    t.put(lock, b"not a lock").expect("put");
    let e = t
        .swap("refs/hosts/h", Some(b"g1"), b"g2")
        .expect_err("damaged");
    assert!(e.to_string().contains("a damaged lock object"), "{e}");
}

/// A store that does not answer fails in seconds, naming the remote and
/// the key (object_store would retry for three minutes by default).
#[test]
fn a_store_that_does_not_answer_fails_in_seconds() {
    let port = sysgen_tests::sshd::free_port();
    let opts = S3Options {
        vars: vec![
            (
                "AWS_ENDPOINT_URL".into(),
                format!("http://127.0.0.1:{port}"),
            ),
            ("AWS_ACCESS_KEY_ID".into(), "GK0".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "0".into()),
        ],
        ..S3Options::default()
    };
    let t = sysgen_remote::s3::open("s3://b/p", &opts).expect("open makes no request");
    let started = std::time::Instant::now();
    let e = t.get("hosts/web1").expect_err("nobody listens");
    assert!(e.to_string().starts_with("s3://b/p: hosts/web1: "), "{e}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// The measurement behind `has`'s design (docs/remote.md): HEADs of a
/// 1,000-key batch, at several widths, against one LIST of the prefix
/// holding 2,000 keys. Run by hand:
/// `cargo nextest run -p sysgen-tests --test remote_s3 --run-ignored only measure`
#[test]
#[ignore = "a measurement, run by hand"]
fn measure_has_heads_against_a_list() {
    let Some(g) = Garage::start("measure_has_heads_against_a_list") else {
        return;
    };
    let t = g.open("m");
    let all: Vec<String> = (0..2000).map(|i| format!("objects/{i:064x}")).collect();
    for k in &all {
        t.put(k, b"x").expect("put");
    }
    let batch: Vec<String> = (0..1000)
        .map(|i| format!("objects/{:064x}", i * 3))
        .collect();
    for width in [1, 8, 32, 64] {
        let t = sysgen_remote::s3::open(
            &g.url("m"),
            &S3Options {
                heads_in_flight: width,
                list_from: usize::MAX,
                ..g.options()
            },
        )
        .expect("open");
        let start = std::time::Instant::now();
        let found = t.has(&batch).expect("has");
        eprintln!(
            "HEAD x{width}: {:?} for {} keys ({} present)",
            start.elapsed(),
            batch.len(),
            found.iter().filter(|f| **f).count()
        );
    }
    let start = std::time::Instant::now();
    let listed = t.list("objects/").expect("list");
    eprintln!("LIST: {:?} for {} keys", start.elapsed(), listed.len());
    let start = std::time::Instant::now();
    let found = t.has(&batch).expect("has");
    eprintln!(
        "has (the default: LIST then HEADs): {:?} ({} present)",
        start.elapsed(),
        found.iter().filter(|f| **f).count()
    );
}

/// `has` answered by a LIST (whole, or cut short at its budget, the rest
/// by HEADs) says exactly what HEADs alone say, in order.
#[test]
fn has_by_listing_answers_exactly_as_heads_do() {
    let Some(g) = Garage::start("has_by_listing_answers_exactly_as_heads_do") else {
        return;
    };
    let t = g.open("h");
    // 134 keys in objects/ (0 to 199, less every third), 3 in nodes/; the
    // batch: every 7th of 300 possible objects (some beyond the last one
    // present), the nodes, one key at the top.
    for i in (0..200).filter(|i| i % 3 != 1) {
        t.put(&format!("objects/{i:04}"), b"o").expect("put");
    }
    for n in ["nodes/a", "nodes/c", "nodes/e"] {
        t.put(n, b"n").expect("put");
    }
    t.put("top", b"t").expect("put");
    let mut batch: Vec<String> = (0..300)
        .step_by(7)
        .map(|i| format!("objects/{i:04}"))
        .collect();
    batch.extend(["nodes/a", "nodes/b", "nodes/e", "top", "bottom"].map(String::from));
    let present = |k: &String| match k.strip_prefix("objects/") {
        Some(n) => n.parse::<u32>().is_ok_and(|n| n < 200 && n % 3 != 1),
        None => ["nodes/a", "nodes/e", "top"].contains(&k.as_str()),
    };
    // HEADs only; then LIST_FROM 2: every directory is listed, objects/
    // whole (43 keys asked: a budget of 344); then 10 objects asked, a
    // budget of 80 that cuts the listing at objects/0119: the first five
    // are answered by the listing, the last five (280 and up) by HEADs.
    let cut: Vec<String> = batch[..5].iter().chain(&batch[40..45]).cloned().collect();
    for (list_from, batch) in [(usize::MAX, batch.clone()), (2, batch.clone()), (2, cut)] {
        let t = sysgen_remote::s3::open(
            &g.url("h"),
            &S3Options {
                list_from,
                ..g.options()
            },
        )
        .expect("open");
        let want: Vec<bool> = batch.iter().map(present).collect();
        assert!(want.contains(&true) && want.contains(&false), "{batch:?}");
        assert_eq!(
            t.has(&batch).expect("has"),
            want,
            "list_from {list_from}: {batch:?}"
        );
    }
}
