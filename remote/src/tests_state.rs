//! Push and pull between two real state directories (SQLite and the
//! store) through a file remote: the `.deb` files a generation's packages
//! need travel with it and are recorded on the host, and a swapped record
//! is refused.

use std::collections::BTreeMap;

use sysgen_generations::db::ManifestInfo;
use sysgen_generations::manifest::{Entry, Manifest, Node, NodeEntry};
use sysgen_generations::sections::{PackageSet, Pin};
use sysgen_generations::state::Access;
use sysgen_generations::{GenerationId, NoProgress, State};
use sysgen_store::{Area, Hash};

use crate::file::FileTransport;
use crate::local::StateTransport;
use crate::ops::{PullRequest, PushRequest, pull, push};
use crate::sign::Key;
use crate::{Transport, layout};

const DEB: &[u8] = b"!<arch>\nnot really a deb, but bytes with a hash\n";

fn state(dir: &std::path::Path) -> State {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    State::open(&root, &root.join("var/lib/sysgen"), Access::Write).unwrap()
}

/// A generation of one file and one package whose .deb is in the store.
fn generation(s: &mut State) -> (GenerationId, Hash) {
    let motd = s.store.put_bytes(b"hello\n", Area::Public).unwrap();
    let node = Node {
        entries: vec![NodeEntry {
            name: "motd".into(),
            entry: Entry::File {
                hash: motd,
                size: 6,
                mode: 0o644,
                uid: None,
                gid: None,
                secret: false,
                xattrs: Default::default(),
                link: None,
            },
            tree: None,
        }],
    };
    let body = node.encode().unwrap();
    let root = Node::id_of(&body);
    s.db.insert_nodes(|sink| sink(root, body)).unwrap();
    let mut m: Manifest = serde_json::from_value(serde_json::json!({
        "sysgen": 1,
        "root": root.0.to_hex(),
    }))
    .unwrap();
    m.packages = PackageSet {
        apt: BTreeMap::from([(
            "sg-hello".to_owned(),
            Pin {
                version: "1.0".into(),
                arch: "all".into(),
                dependency: false,
            },
        )]),
        purge: Default::default(),
    };
    let id =
        s.db.put_manifest(
            &m,
            &ManifestInfo {
                config: None,
                entries: 1,
                bytes: 6,
                built_at: 0,
            },
        )
        .unwrap();
    let deb = s.store.put_bytes(DEB, Area::Public).unwrap();
    s.db.record_package_file("apt", "sg-hello", "1.0", "all", &deb)
        .unwrap();
    (id, deb)
}

#[test]
fn the_debs_of_a_generation_travel_with_it_and_a_swapped_record_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = state(&tmp.path().join("a"));
    let (id, deb) = generation(&mut a);
    let src = StateTransport::new(a, 0);
    let url = format!("file://{}/remote", tmp.path().display());
    let remote = FileTransport::open(&url, &tmp.path().join("remote"), true).unwrap();
    let key = Key::generate().unwrap();
    let o = push(
        &src,
        &remote,
        &PushRequest {
            generation: id,
            ref_name: Some("hosts/h"),
            key: &key,
            recipient: None,
            now: 0,
            progress: &NoProgress,
            fault: None,
        },
    )
    .unwrap();
    // The file and the .deb.
    assert_eq!(o.moved.objects, 2);
    let records = remote.list("packages/").unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(remote.has(&[layout::object(&deb)]).unwrap()[0]);

    let b = StateTransport::new(state(&tmp.path().join("b")), 0);
    let trusted = vec![key.public()];
    let req = PullRequest {
        ref_name: "hosts/h",
        trusted: &trusted,
        now: 0,
        progress: &NoProgress,
        fault: None,
    };
    pull(&remote, &b, &req).unwrap();
    {
        let s = b.lock();
        assert_eq!(
            s.db.package_file("apt", "sg-hello", "1.0", "all").unwrap(),
            Some(deb)
        );
        assert_eq!(s.store.read(&deb, Area::Public).unwrap(), DEB);
        assert!(s.db.has_manifest(&id).unwrap());
    }

    // A remote that swaps the record (another .deb under the same name)
    // is caught by the record's hash, which the signed ref names.
    let c = StateTransport::new(state(&tmp.path().join("c")), 0);
    let path = tmp.path().join("remote").join(&records[0]);
    let forged = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&deb.to_hex(), &Hash::of(b"evil").to_hex());
    std::fs::write(&path, forged).unwrap();
    let e = pull(&remote, &c, &req).unwrap_err();
    assert!(e.to_string().contains("does not match its hash"), "{e}");
    assert_eq!(
        c.lock()
            .db
            .package_file("apt", "sg-hello", "1.0", "all")
            .unwrap(),
        None
    );
}
