//! The binary encoding of a [`Node`] (manifest format 2).
//!
//! ```text
//! node   = "SGN\x02" varint(count) entry*
//! entry  = varint(len) name  tree  varint(len) record
//! tree   = 0x00 | 0x01 hash[32]          the node of a directory's contents
//! record = kind flags fields             the entry itself (see below)
//! ```
//!
//! Each entry's record is length-prefixed and kept apart from its name and
//! subtree, so that [`crate::manifest::diff`] can compare two entries as
//! bytes and decode only those that differ. That needs one encoding per
//! entry: [`decode_entry`] refuses every other spelling (an over-long
//! varint, a flag a kind does not have, an empty or unsorted attribute
//! list, trailing bytes), so equal bytes are equal entries and the other
//! way round. Numbers are LEB128 varints, strings a varint length and UTF-8.
//!
//! Fields by kind, optional ones present when their flag is set:
//!
//! ```text
//! file     hash[32] varint(size) varint(mode) [uid] [gid] [xattrs] [link]
//! dir      [mode] [uid] [gid] [xattrs]
//! symlink  string(target) [uid] [gid]
//! xattrs   varint(count) (string(name) bytes(value))*   names strictly increasing
//! ```

use std::collections::BTreeMap;

use sysgen_schema::EntryPath;
use sysgen_store::Hash;

use super::{Entry, Node, NodeEntry, NodeId};
use crate::rootfs::Xattrs;

pub const MAGIC: &[u8; 4] = b"SGN\x02";

const FILE: u8 = 0;
const DIR: u8 = 1;
const SYMLINK: u8 = 2;

const UID: u8 = 1;
const GID: u8 = 2;
const XATTRS: u8 = 4;
const SECRET: u8 = 8;
const LINK: u8 = 16;
const MODE: u8 = 32;

/// The flags each kind may carry: any other bit is a decoding error.
fn allowed(kind: u8) -> Option<u8> {
    match kind {
        FILE => Some(UID | GID | XATTRS | SECRET | LINK),
        DIR => Some(UID | GID | XATTRS | MODE),
        SYMLINK => Some(UID | GID),
        _ => None,
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub(super) fn encode(node: &Node) -> Vec<u8> {
    let mut w = NodeWriter::new(node.entries.len());
    for e in &node.entries {
        w.push(&e.name, e.tree, &e.entry);
    }
    w.finish()
}

/// Encodes a node entry by entry, from borrowed names: a build encodes
/// 100k entries without making a [`NodeEntry`] (and its name) for each.
pub(super) struct NodeWriter {
    out: Vec<u8>,
    rec: Vec<u8>,
}

impl NodeWriter {
    /// A node of exactly `count` entries (pushed next, in name order).
    pub(super) fn new(count: usize) -> NodeWriter {
        let mut out = Vec::with_capacity(8 + count * 64);
        out.extend_from_slice(MAGIC);
        varint(&mut out, count as u64);
        NodeWriter {
            out,
            rec: Vec::with_capacity(128),
        }
    }

    pub(super) fn push(&mut self, name: &str, tree: Option<NodeId>, entry: &Entry) {
        bytes(&mut self.out, name.as_bytes());
        match tree {
            None => self.out.push(0),
            Some(t) => {
                self.out.push(1);
                self.out.extend_from_slice(t.0.as_bytes());
            }
        }
        self.rec.clear();
        encode_entry(&mut self.rec, entry);
        bytes(&mut self.out, &self.rec);
    }

    pub(super) fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Appends an entry's record: its one spelling (see the module docs).
pub(crate) fn encode_entry(out: &mut Vec<u8>, e: &Entry) {
    let opt = |f: &mut u8, bit: u8, v: &Option<u32>| {
        if v.is_some() {
            *f |= bit
        }
    };
    let put_opt = |out: &mut Vec<u8>, v: &Option<u32>| {
        if let Some(v) = v {
            varint(out, u64::from(*v));
        }
    };
    let put_xattrs = |out: &mut Vec<u8>, x: &Xattrs| {
        if !x.is_empty() {
            varint(out, x.0.len() as u64);
            for (k, v) in &x.0 {
                bytes(out, k.as_bytes());
                bytes(out, v);
            }
        }
    };
    let mut flags = 0u8;
    match e {
        Entry::File {
            hash,
            size,
            mode,
            uid,
            gid,
            secret,
            xattrs,
            link,
        } => {
            opt(&mut flags, UID, uid);
            opt(&mut flags, GID, gid);
            if !xattrs.is_empty() {
                flags |= XATTRS;
            }
            if *secret {
                flags |= SECRET;
            }
            if link.is_some() {
                flags |= LINK;
            }
            out.extend_from_slice(&[FILE, flags]);
            out.extend_from_slice(hash.as_bytes());
            varint(out, *size);
            varint(out, u64::from(*mode));
            put_opt(out, uid);
            put_opt(out, gid);
            put_xattrs(out, xattrs);
            if let Some(l) = link {
                bytes(out, l.as_str().as_bytes());
            }
        }
        Entry::Dir {
            mode,
            uid,
            gid,
            xattrs,
        } => {
            opt(&mut flags, MODE, mode);
            opt(&mut flags, UID, uid);
            opt(&mut flags, GID, gid);
            if !xattrs.is_empty() {
                flags |= XATTRS;
            }
            out.extend_from_slice(&[DIR, flags]);
            put_opt(out, mode);
            put_opt(out, uid);
            put_opt(out, gid);
            put_xattrs(out, xattrs);
        }
        Entry::Symlink { target, uid, gid } => {
            opt(&mut flags, UID, uid);
            opt(&mut flags, GID, gid);
            out.extend_from_slice(&[SYMLINK, flags]);
            bytes(out, target.as_bytes());
            put_opt(out, uid);
            put_opt(out, gid);
        }
    }
}

/// Reads a buffer front to back; every read fails cleanly at its end.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err("truncated".into());
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    /// A minimal LEB128 varint: an over-long one is another spelling of
    /// the same number, refused so that bytes and values stay one-to-one.
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if i == 9 && part > 1 {
                return Err("a number over 64 bits".into());
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err("a number with a needless byte".into());
                }
                return Ok(v);
            }
        }
        Err("a number over 64 bits".into())
    }

    fn u32(&mut self) -> Result<u32, String> {
        u32::try_from(self.varint()?).map_err(|_| "a number over 32 bits".to_owned())
    }

    fn len(&mut self) -> Result<usize, String> {
        let n = self.varint()?;
        // Never trust a length beyond what is left (no huge allocation).
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.buf.len())
            .ok_or_else(|| "truncated".to_owned())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.len()?;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'a str, String> {
        std::str::from_utf8(self.bytes()?).map_err(|_| "a string that is not UTF-8".to_owned())
    }

    fn hash(&mut self) -> Result<Hash, String> {
        let b: [u8; 32] = self
            .take(32)?
            .try_into()
            .map_err(|_| "truncated".to_owned())?;
        Ok(Hash::from_bytes(b))
    }

    fn opt(&mut self, flags: u8, bit: u8) -> Result<Option<u32>, String> {
        if flags & bit != 0 {
            self.u32().map(Some)
        } else {
            Ok(None)
        }
    }
}

/// One entry of an encoded node, its record not decoded.
pub struct RawEntry<'a> {
    /// The name's bytes, not yet checked as UTF-8: what makes a path or a
    /// [`NodeEntry`] of it checks it ([`super::diff`], [`decode`]). A diff
    /// compares names as bytes (the order of `str` is the order of its
    /// bytes) and makes paths of the few that differ; checking every name
    /// of every node it read was a tenth of its instructions.
    pub name: &'a [u8],
    pub tree: Option<NodeId>,
    /// The entry's encoding: equal records are equal entries.
    pub rec: &'a [u8],
}

impl RawEntry<'_> {
    pub fn is_dir(&self) -> bool {
        self.rec.first() == Some(&DIR)
    }

    pub fn entry(&self) -> Result<Entry, String> {
        decode_entry(self.rec)
    }

    /// A file entry's object, its hash and whether it is secret, read
    /// from the record's first fields without decoding the rest: gc's mark
    /// needs nothing else, and a decode per entry (its name, link and
    /// attributes made into owned values) was most of the mark's time.
    /// The node was checked against its id, so the record is one a build
    /// encoded.
    pub fn file_object(&self) -> Result<Option<(Hash, bool)>, String> {
        let [kind, flags, rest @ ..] = self.rec else {
            return Err("a record shorter than its kind and flags".into());
        };
        if *kind != FILE {
            return Ok(None);
        }
        let hash = rest
            .get(..32)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or("a file record shorter than its hash")?;
        Ok(Some((Hash::from_bytes(hash), flags & SECRET != 0)))
    }
}

/// Splits an encoded node into its entries without decoding their records.
pub fn entries(bytes: &[u8]) -> Result<Vec<RawEntry<'_>>, String> {
    let mut r = Reader { buf: bytes };
    if r.take(4).ok() != Some(&MAGIC[..]) {
        return Err("not a binary node".into());
    }
    let n = r.varint()?;
    // Every entry takes at least three bytes.
    let cap = usize::try_from(n)
        .unwrap_or(usize::MAX)
        .min(r.buf.len() / 3);
    let mut out = Vec::with_capacity(cap);
    for _ in 0..n {
        let name = r.bytes()?;
        let tree = match r.byte()? {
            0 => None,
            1 => Some(NodeId(r.hash()?)),
            _ => return Err("a bad subtree marker".into()),
        };
        let rec = r.bytes()?;
        out.push(RawEntry { name, tree, rec });
    }
    if !r.buf.is_empty() {
        return Err("trailing bytes after the last entry".into());
    }
    Ok(out)
}

pub(super) fn decode(bytes: &[u8]) -> Result<Node, String> {
    let entries = entries(bytes)?
        .into_iter()
        .map(|e| {
            let name = std::str::from_utf8(e.name).map_err(|_| not_utf8(e.name))?;
            Ok(NodeEntry {
                name: name.to_owned(),
                entry: decode_entry(e.rec).map_err(|m| format!("entry {name:?}: {m}"))?,
                tree: e.tree,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Node { entries })
}

/// Why `name` is refused: shown with its bad bytes replaced.
pub fn not_utf8(name: &[u8]) -> String {
    format!(
        "a name that is not UTF-8 ({:?})",
        String::from_utf8_lossy(name)
    )
}

pub fn decode_entry(rec: &[u8]) -> Result<Entry, String> {
    let mut r = Reader { buf: rec };
    let kind = r.byte()?;
    let flags = r.byte()?;
    let mask = allowed(kind).ok_or_else(|| format!("unknown entry kind {kind}"))?;
    if flags & !mask != 0 {
        return Err(format!("flags {flags:#x} that a kind {kind} entry has not"));
    }
    let e = match kind {
        FILE => {
            let hash = r.hash()?;
            let size = r.varint()?;
            let mode = r.u32()?;
            let uid = r.opt(flags, UID)?;
            let gid = r.opt(flags, GID)?;
            let xattrs = xattrs(&mut r, flags)?;
            let link = if flags & LINK != 0 {
                let s = r.str()?;
                Some(EntryPath::parse(s).map_err(|e| format!("link {s:?}: {e}"))?)
            } else {
                None
            };
            Entry::File {
                hash,
                size,
                mode,
                uid,
                gid,
                secret: flags & SECRET != 0,
                xattrs,
                link,
            }
        }
        DIR => Entry::Dir {
            mode: r.opt(flags, MODE)?,
            uid: r.opt(flags, UID)?,
            gid: r.opt(flags, GID)?,
            xattrs: xattrs(&mut r, flags)?,
        },
        _ => Entry::Symlink {
            target: r.str()?.to_owned(),
            uid: r.opt(flags, UID)?,
            gid: r.opt(flags, GID)?,
        },
    };
    if !r.buf.is_empty() {
        return Err("trailing bytes in an entry".into());
    }
    Ok(e)
}

fn xattrs(r: &mut Reader<'_>, flags: u8) -> Result<Xattrs, String> {
    let mut out = BTreeMap::new();
    if flags & XATTRS == 0 {
        return Ok(Xattrs(out));
    }
    let n = r.varint()?;
    if n == 0 {
        return Err("an empty attribute list (flag set)".into());
    }
    let mut last: Option<&str> = None;
    for _ in 0..n {
        let k = r.str()?;
        if last.is_some_and(|l| l >= k) {
            return Err("attributes not in strictly increasing order".into());
        }
        last = Some(k);
        out.insert(k.to_owned(), r.bytes()?.to_vec());
    }
    Ok(Xattrs(out))
}
