use super::*;

fn p(s: &str) -> EntryPath {
    EntryPath::parse(s).unwrap()
}
fn dir() -> Entry {
    Entry::Dir {
        mode: None,
        uid: None,
        gid: None,
        xattrs: Default::default(),
    }
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

#[test]
fn entries_round_trip_and_stray_fields_are_refused() {
    let all = [
        file("a"),
        Entry::File {
            hash: Hash::of(b"s"),
            size: 1,
            mode: 0o600,
            uid: Some(0),
            gid: Some(5),
            secret: true,
            xattrs: Default::default(),
            link: None,
        },
        dir(),
        Entry::Dir {
            mode: Some(0o750),
            uid: Some(1),
            gid: None,
            xattrs: Default::default(),
        },
        Entry::Symlink {
            target: "/x".into(),
            uid: None,
            gid: None,
        },
        Entry::Symlink {
            target: "/y".into(),
            uid: Some(3),
            gid: Some(4),
        },
    ];
    for e in all {
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), e, "{text}");
    }
    let h = Hash::of(b"a").to_hex();
    for bad in [
        format!(r#"{{"type":"file","hash":"{h}","size":1,"mode":420,"target":"x"}}"#),
        format!(r#"{{"type":"file","hash":"{h}","mode":420}}"#),
        format!(r#"{{"type":"dir","hash":"{h}"}}"#),
        r#"{"type":"dir","secret":true}"#.to_owned(),
        r#"{"type":"symlink","target":"x","mode":420}"#.to_owned(),
        r#"{"type":"symlink"}"#.to_owned(),
        r#"{"type":"dir","colour":"red"}"#.to_owned(),
        r#"{"type":"socket"}"#.to_owned(),
    ] {
        assert!(serde_json::from_str::<Entry>(&bad).is_err(), "{bad}");
    }
}

fn tree(entries: &[(&str, Entry)]) -> (NodeId, BTreeMap<NodeId, Node>) {
    let m: BTreeMap<EntryPath, Entry> = entries.iter().map(|(k, v)| (p(k), v.clone())).collect();
    let mut nodes = BTreeMap::new();
    let root = build_tree::<_, crate::Error>(&m, &Entry::clone, &mut |id, b| {
        nodes.insert(id, Node::decode(&b).unwrap());
        Ok(())
    })
    .unwrap();
    (root, nodes)
}

#[test]
fn walk_returns_every_entry_sorted() {
    let entries = [
        ("/a", dir()),
        ("/a-b", file("x")),
        ("/a/b", file("y")),
        (
            "/c",
            Entry::Symlink {
                target: "a".into(),
                uid: None,
                gid: None,
            },
        ),
    ];
    let (root, nodes) = tree(&entries);
    let got: Vec<String> = walk(&nodes, root)
        .unwrap()
        .into_iter()
        .map(|(p, _)| p.to_string())
        .collect();
    assert_eq!(got, ["/a", "/a-b", "/a/b", "/c"]);
}

#[test]
fn diff_reports_exactly_the_changes() {
    let (ra, mut na) = tree(&[
        ("/a", dir()),
        ("/a/x", file("1")),
        ("/a/y", file("2")),
        ("/b", dir()),
        ("/b/z", file("3")),
    ]);
    let (rb, nb) = tree(&[
        ("/a", dir()),
        ("/a/x", file("1")),
        ("/a/y", file("22")),
        ("/b", file("now a file")),
    ]);
    na.extend(nb);
    let d = diff(&na, Some(ra), Some(rb)).unwrap();
    let shown: Vec<String> = d
        .iter()
        .map(|c| match c {
            Change::Added(p, _) => format!("+{p}"),
            Change::Removed(p, _) => format!("-{p}"),
            Change::Changed(p, _, _) => format!("~{p}"),
        })
        .collect();
    assert_eq!(shown, ["~/a/y", "~/b", "-/b/z"]);
}

#[test]
fn diff_skips_equal_subtrees_without_reading_them() {
    let (ra, mut na) = tree(&[("/big", dir()), ("/big/f", file("1")), ("/s", file("a"))]);
    let (rb, nb) = tree(&[("/big", dir()), ("/big/f", file("1")), ("/s", file("b"))]);
    na.extend(nb);
    // Drop the shared subtree's node: diff must not need it.
    let big = na[&ra].entries[0].tree.unwrap();
    na.remove(&big);
    let d = diff(&na, Some(ra), Some(rb)).unwrap();
    assert_eq!(d.len(), 1);
}

#[test]
fn ids_are_content_addressed() {
    let (r1, _) = tree(&[("/a", file("x"))]);
    let (r2, _) = tree(&[("/a", file("x"))]);
    let (r3, _) = tree(&[("/a", file("y"))]);
    assert_eq!(r1, r2);
    assert_ne!(r1, r3);
}

// ------------------------------------------------ the binary encoding

fn every_kind() -> Vec<Entry> {
    let x = crate::rootfs::Xattrs(
        [
            ("security.capability".to_owned(), vec![1, 0, 0, 2]),
            ("user.a".to_owned(), Vec::new()),
        ]
        .into(),
    );
    vec![
        file("a"),
        Entry::File {
            hash: Hash::of(b"s"),
            size: u64::MAX,
            mode: u32::MAX,
            uid: Some(0),
            gid: Some(u32::MAX),
            secret: true,
            xattrs: x.clone(),
            link: Some(p("/a/b")),
        },
        dir(),
        Entry::Dir {
            mode: Some(0o750),
            uid: Some(1),
            gid: None,
            xattrs: x,
        },
        Entry::Symlink {
            target: "/x".into(),
            uid: None,
            gid: None,
        },
        Entry::Symlink {
            target: String::new(),
            uid: Some(3),
            gid: Some(4),
        },
    ]
}

#[test]
fn binary_nodes_round_trip_every_kind_and_field() {
    let entries: Vec<NodeEntry> = every_kind()
        .into_iter()
        .enumerate()
        .map(|(i, entry)| NodeEntry {
            name: format!("n{i}"),
            tree: entry.is_dir().then(|| NodeId(Hash::of(&[i as u8]))),
            entry,
        })
        .collect();
    let node = Node { entries };
    let bytes = node.encode().unwrap();
    assert!(bytes.starts_with(binary::MAGIC));
    assert_eq!(Node::decode(&bytes).unwrap(), node);
    // Format 1's JSON of the same node still decodes (migration 9 reads it).
    let json = serde_json::to_vec(&node).unwrap();
    assert_eq!(Node::decode(&json).unwrap(), node);
    assert_eq!(
        Node::decode(&Node::default().encode().unwrap()).unwrap(),
        Node::default()
    );
    // Each record decodes alone to its entry, and its bytes are its identity.
    for (raw, e) in binary::entries(&bytes).unwrap().iter().zip(&node.entries) {
        assert_eq!(&raw.entry().unwrap(), &e.entry);
        assert_eq!(raw.is_dir(), e.entry.is_dir());
        assert_eq!(raw.tree, e.tree);
        // gc's mark reads a file's object from the record's first fields.
        let object = match &e.entry {
            Entry::File { hash, secret, .. } => Some((*hash, *secret)),
            _ => None,
        };
        assert_eq!(raw.file_object().unwrap(), object);
    }
}

#[test]
fn other_spellings_of_a_node_are_refused() {
    let one = |entry: Entry| {
        Node {
            entries: vec![NodeEntry {
                name: "x".into(),
                entry,
                tree: None,
            }],
        }
        .encode()
        .unwrap()
    };
    let good = one(Entry::Symlink {
        target: "t".into(),
        uid: Some(1),
        gid: None,
    });
    assert!(Node::decode(&good).is_ok());
    // MAGIC, count 1, name "x", no tree, record length 5: kind 2, flags 1,
    // target "t", uid 1.
    assert_eq!(&good[4..], [1, 1, b'x', 0, 5, 2, 1, 1, b't', 1]);
    let with = |at: usize, f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        b.truncate(at);
        f(&mut b);
        b
    };
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() - 1].to_vec()),
        ("trailing", [good.clone(), vec![0]].concat()),
        // uid 1 spelled in two bytes (0x81 0x00), record length 6.
        (
            "over-long",
            with(8, &|b| b.extend([6, 2, 1, 1, b't', 0x81, 0])),
        ),
        // A flag symlinks do not have (secret).
        ("flag", with(8, &|b| b.extend([5, 2, 9, 1, b't', 1]))),
        ("kind", with(8, &|b| b.extend([5, 7, 1, 1, b't', 1]))),
        (
            "tree marker",
            with(7, &|b| b.extend([2, 5, 2, 1, 1, b't', 1])),
        ),
        ("magic", [b"SGN\x01".as_slice(), &good[4..]].concat()),
        (
            "utf-8",
            with(5, &|b| b.extend([1, 0xff, 0, 5, 2, 1, 1, b't', 1])),
        ),
    ];
    for (why, b) in bad {
        assert!(Node::decode(&b).is_err(), "{why}: {b:?}");
    }
    // Attributes: an empty list behind the flag, and names out of order.
    let x = |names: &[&str]| {
        one(Entry::Dir {
            mode: None,
            uid: None,
            gid: None,
            xattrs: crate::rootfs::Xattrs(names.iter().map(|n| (n.to_string(), vec![])).collect()),
        })
    };
    let two = x(&["a", "b"]);
    let swapped: Vec<u8> = {
        let mut b = two.clone();
        // ... 1 'a' 0 1 'b' 0: the two names swapped.
        let at = b.len() - 5;
        b[at] = b'b';
        b[at + 3] = b'a';
        b
    };
    assert!(Node::decode(&two).is_ok());
    assert!(Node::decode(&swapped).is_err());
    let empty = {
        let mut b = x(&[]);
        // ... record length 2, kind 1, flags 0.
        let last = b.len() - 1;
        b[last - 2] = 3;
        b[last] |= 4; // the XATTRS flag
        b.push(0); // count 0
        b
    };
    assert!(Node::decode(&empty).is_err(), "{empty:?}");
}

// ----------------------------------------------------------- the diff

/// Counts the nodes a diff reads.
struct Counting<'a> {
    nodes: &'a BTreeMap<NodeId, Node>,
    reads: std::cell::Cell<usize>,
}

impl NodeSource for Counting<'_> {
    fn node(&self, id: &NodeId) -> Result<Node, crate::Error> {
        self.reads.set(self.reads.get() + 1);
        self.nodes.node(id)
    }
}

#[test]
fn a_diff_of_one_changed_file_reads_the_nodes_along_its_path_only() {
    // 10 x 10 x 10 directories of 10 files: 10,000 files, 1,111 nodes.
    let mut t = BTreeMap::new();
    for a in 0..10 {
        t.insert(p(&format!("/d{a}")), dir());
        for b in 0..10 {
            t.insert(p(&format!("/d{a}/s{b}")), dir());
            for c in 0..10 {
                t.insert(p(&format!("/d{a}/s{b}/t{c}")), dir());
                for f in 0..10 {
                    // Every file its own: no two subtrees are the same node.
                    t.insert(
                        p(&format!("/d{a}/s{b}/t{c}/f{f}")),
                        file(&format!("{a}{b}{c}{f}")),
                    );
                }
            }
        }
    }
    let build = |t: &BTreeMap<EntryPath, Entry>, nodes: &mut BTreeMap<NodeId, Node>| {
        build_tree::<_, crate::Error>(t, &Entry::clone, &mut |id, b| {
            nodes.insert(id, Node::decode(&b).unwrap());
            Ok(())
        })
        .unwrap()
    };
    let mut nodes = BTreeMap::new();
    let ra = build(&t, &mut nodes);
    assert_eq!(nodes.len(), 1_111);
    t.insert(p("/d3/s4/t5/f6"), file("y"));
    let rb = build(&t, &mut nodes);
    let src = Counting {
        nodes: &nodes,
        reads: 0.into(),
    };
    let d = diff(&src, Some(ra), Some(rb)).unwrap();
    assert_eq!(
        d,
        [Change::changed(p("/d3/s4/t5/f6"), file("3456"), file("y"))]
    );
    // Root, /d3, /d3/s4, /d3/s4/t5, on each side: depth 4, times 2.
    assert_eq!(src.reads.get(), 8);
    src.reads.set(0);
    assert!(diff(&src, Some(ra), Some(ra)).unwrap().is_empty());
    assert_eq!(src.reads.get(), 0);
}

/// Nodes kept as bytes, as no build makes them.
struct Forged(BTreeMap<NodeId, Vec<u8>>);

impl NodeSource for Forged {
    fn node(&self, id: &NodeId) -> Result<Node, crate::Error> {
        Node::decode(&self.raw(id)?).map_err(|e| crate::Error::CorruptManifest(e.0))
    }

    fn raw(&self, id: &NodeId) -> Result<Vec<u8>, crate::Error> {
        self.0
            .get(id)
            .cloned()
            .ok_or(crate::Error::MissingNode(id.0))
    }
}

#[test]
fn a_name_that_is_not_utf8_is_refused_where_a_path_is_made_of_it() {
    // Two symlinks: "a" to `a`, and one named 0xff 'b' to `bad`.
    let node = |a: u8, bad: u8| {
        let mut b = binary::MAGIC.to_vec();
        b.push(2);
        b.extend([1, b'a', 0, 4, 2, 0, 1, a]);
        b.extend([2, 0xff, b'b', 0, 4, 2, 0, 1, bad]);
        b
    };
    let mut src = Forged(BTreeMap::new());
    let mut put = |bytes: Vec<u8>| {
        let id = Node::id_of(&bytes);
        src.0.insert(id, bytes);
        id
    };
    let (base, a_changed, bad_changed) = (
        put(node(b't', b't')),
        put(node(b'u', b't')),
        put(node(b't', b'u')),
    );
    // The bad name's entry is the same on both sides: compared as bytes,
    // never made a path, so the diff reports the one change.
    let changes = diff(&src, Some(base), Some(a_changed)).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].path(), &p("/a"));
    // Where it differs its path is made, and the name is refused.
    let refused = |r: Result<Vec<Change>, crate::Error>| matches!(r, Err(crate::Error::CorruptManifest(m)) if m.contains("not UTF-8"));
    assert!(refused(diff(&src, Some(base), Some(bad_changed))));
    assert!(refused(diff(&src, None, Some(base))));
    assert!(matches!(
        walk(&src, base),
        Err(crate::Error::CorruptManifest(m)) if m.contains("not UTF-8")
    ));
    assert!(Node::decode(&src.0[&base]).is_err());
}

/// The diff before binary nodes (format 1's), on decoded nodes: what the
/// new one must agree with.
fn reference_diff(
    src: &dyn NodeSource,
    dir: Option<&EntryPath>,
    a: Option<NodeId>,
    b: Option<NodeId>,
    out: &mut Vec<Change>,
) {
    if a == b {
        return;
    }
    let na = a.map(|id| src.node(&id).unwrap()).unwrap_or_default();
    let nb = b.map(|id| src.node(&id).unwrap()).unwrap_or_default();
    let path = |n: &str| match dir {
        None => EntryPath::top(n).unwrap(),
        Some(d) => d.join(n).unwrap(),
    };
    let (mut i, mut j) = (0, 0);
    while i < na.entries.len() || j < nb.entries.len() {
        let (ea, eb) = (na.entries.get(i), nb.entries.get(j));
        let ord = match (ea, eb) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match (ord, ea, eb) {
            (std::cmp::Ordering::Less, Some(x), _) => {
                let q = path(&x.name);
                reference_diff(src, Some(&q), x.tree, None, out);
                out.push(Change::Removed(q, x.entry.clone()));
                i += 1;
            }
            (std::cmp::Ordering::Greater, _, Some(y)) => {
                let q = path(&y.name);
                out.push(Change::Added(q.clone(), y.entry.clone()));
                reference_diff(src, Some(&q), None, y.tree, out);
                j += 1;
            }
            (_, Some(x), Some(y)) => {
                let q = path(&x.name);
                if x.entry.is_dir() && y.entry.is_dir() {
                    if x.entry != y.entry {
                        out.push(Change::changed(q.clone(), x.entry.clone(), y.entry.clone()));
                    }
                    reference_diff(src, Some(&q), x.tree, y.tree, out);
                } else if x.entry.is_dir() || y.entry.is_dir() {
                    reference_diff(src, Some(&q), x.tree, None, out);
                    reference_diff(src, Some(&q), None, y.tree, out);
                    out.push(Change::changed(q, x.entry.clone(), y.entry.clone()));
                } else if x.entry != y.entry {
                    out.push(Change::changed(q, x.entry.clone(), y.entry.clone()));
                }
                i += 1;
                j += 1;
            }
            _ => break,
        }
    }
}

mod equivalence {
    use proptest::prelude::*;

    use super::*;

    /// A random entry from a small set, so two trees share many.
    fn entry() -> impl Strategy<Value = Entry> {
        prop_oneof![
            (0u8..3).prop_map(|c| file(&c.to_string())),
            (0u8..2).prop_map(|m| Entry::Dir {
                mode: (m == 1).then_some(0o700),
                uid: None,
                gid: None,
                xattrs: Default::default(),
            }),
            (0u8..2).prop_map(|t| Entry::Symlink {
                target: t.to_string(),
                uid: None,
                gid: None,
            }),
        ]
    }

    /// A tree over names a, b, c up to three levels deep, every ancestor
    /// a directory (as a build makes it).
    fn random_tree() -> impl Strategy<Value = BTreeMap<EntryPath, Entry>> {
        prop::collection::vec((prop::collection::vec(0u8..3, 1..4), entry()), 0..40).prop_map(
            |picks| {
                let mut t: BTreeMap<EntryPath, Entry> = BTreeMap::new();
                for (names, e) in picks {
                    let s: String = names
                        .iter()
                        .map(|n| format!("/{}", ["a", "b", "c"][*n as usize]))
                        .collect();
                    t.insert(p(&s), e);
                }
                let paths: Vec<EntryPath> = t.keys().cloned().collect();
                for q in paths {
                    let mut up = q.parent();
                    while let Some(a) = up {
                        if !t.get(&a).is_some_and(Entry::is_dir) {
                            t.insert(a.clone(), dir());
                        }
                        up = a.parent();
                    }
                }
                t
            },
        )
    }

    proptest! {
        #[test]
        fn the_binary_diff_agrees_with_the_old_one(a in random_tree(), b in random_tree()) {
            let mut nodes = BTreeMap::new();
            let mut put = |t: &BTreeMap<EntryPath, Entry>| {
                build_tree::<_, crate::Error>(t, &Entry::clone, &mut |id, bytes| {
                    nodes.insert(id, Node::decode(&bytes).unwrap());
                    Ok(())
                })
                .unwrap()
            };
            let (ra, rb) = (put(&a), put(&b));
            for (x, y) in [(Some(ra), Some(rb)), (Some(rb), Some(ra)), (None, Some(ra)), (Some(rb), None)] {
                let mut want = Vec::new();
                reference_diff(&nodes, None, x, y, &mut want);
                want.sort_by(|m, n| m.path().cmp(n.path()));
                prop_assert_eq!(diff(&nodes, x, y).unwrap(), want);
            }
            let all: BTreeMap<EntryPath, Entry> = walk(&nodes, rb).unwrap().into_iter().collect();
            prop_assert_eq!(all, b);
        }
    }
}
