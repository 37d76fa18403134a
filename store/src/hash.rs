//! The content key: BLAKE3-256 of the raw bytes.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::StoreError;

/// BLAKE3-256 of raw bytes (never of their compressed form, so the key does not
/// change if the compression level or codec ever does).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hash([u8; 32]);

/// The order of the bytes (as a derived `Ord` gives), compared as four
/// big-endian words in line: the derived comparison calls `memcmp` for every
/// pair, and in gc's sorts (the marks, the packs' index) those calls were a
/// third of its CPU on `/usr/share`. Random hashes differ in the first word.
impl Ord for Hash {
    fn cmp(&self, other: &Hash) -> std::cmp::Ordering {
        for i in 0..4 {
            let o = word(&self.0, i).cmp(&word(&other.0, i));
            if o.is_ne() {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    }
}

impl PartialOrd for Hash {
    fn partial_cmp(&self, other: &Hash) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The `i`th of the hash's four 8-byte words, big-endian (byte order).
fn word(bytes: &[u8; 32], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
    u64::from_be_bytes(w)
}

/// Number of hex characters `Debug` shows: enough to tell objects apart in logs.
const SHORT_HEX: usize = 12;

impl Hash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    pub fn from_bytes(b: [u8; 32]) -> Hash {
        Hash(b)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        // Through `Display`: one allocation of the final size, the digits
        // copied in at once (`hex::encode` collected a `char` at a time,
        // a third of writing a diff's `--json`).
        self.to_string()
    }

    /// The 64 lowercase hex digits, written into `buf` from a table.
    fn hex<'b>(&self, buf: &'b mut [u8; 64]) -> Result<&'b str, std::str::Utf8Error> {
        for (pair, b) in buf.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX_DIGIT[usize::from(b >> 4)];
            pair[1] = HEX_DIGIT[usize::from(b & 0x0f)];
        }
        // Never fails (the digits are ASCII); checked rather than assumed,
        // since a `&str` of bytes unchecked would need `unsafe`.
        std::str::from_utf8(buf)
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(s: &str) -> Result<Hash, StoreError> {
        let bad = || StoreError::BadHash { text: s.to_owned() };
        if s.len() != 64 {
            return Err(bad());
        }
        // By hand: manifests hold a hash per file, and a diff or gc decodes
        // hundreds of thousands of them.
        let mut out = [0u8; 32];
        let mut invalid = 0u8;
        for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            let (hi, lo) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
            // One check at the end instead of a branch per digit.
            invalid |= (hi | lo) & 0xf0;
            *o = hi << 4 | (lo & 0x0f);
        }
        if invalid != 0 {
            return Err(bad());
        }
        Ok(Hash(out))
    }
}

/// The lowercase hex digit of each value of four bits.
const HEX_DIGIT: &[u8; 16] = b"0123456789abcdef";

/// The value of each ASCII hex digit; `INVALID` for every other byte.
const HEX_VALUE: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};
const INVALID: u8 = 0xff;

impl From<blake3::Hash> for Hash {
    fn from(h: blake3::Hash) -> Hash {
        Hash(*h.as_bytes())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        f.write_str(self.hex(&mut buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        let hex = self.hex(&mut buf).map_err(|_| fmt::Error)?;
        write!(f, "Hash({})", &hex[..SHORT_HEX])
    }
}

/// The hex digits from a buffer on the stack: a diff's `--json` writes
/// two hashes a changed file, and made a `String` for each.
impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 64];
        s.serialize_str(self.hex(&mut buf).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        struct HexVisitor;
        impl serde::de::Visitor<'_> for HexVisitor {
            type Value = Hash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a BLAKE3 hash as 64 hex characters")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Hash, E> {
                Hash::from_hex(v).map_err(E::custom)
            }
        }
        d.deserialize_str(HexVisitor)
    }
}

/// Buffer size for streaming reads: large enough that syscall overhead is
/// negligible, small enough to keep per-thread memory flat.
pub(crate) const STREAM_BUF: usize = 64 * 1024;

/// Hashes the file at `path` without loading it whole; returns its hash and size.
pub fn hash_file(path: &Path) -> io::Result<(Hash, u64)> {
    let mut file = File::open(path)?;
    hash_reader(&mut file)
}

/// Hashes everything `r` yields; returns the hash and the byte count.
pub(crate) fn hash_reader(r: &mut dyn Read) -> io::Result<(Hash, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; STREAM_BUF];
    let mut size = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hasher.finalize().into(), size))
}

/// A [`std::hash::Hasher`] for sets and maps keyed by [`Hash`] (or types
/// wrapping one): the key is a BLAKE3 output, uniform already, so its first
/// eight bytes are as good a hash as any. SipHash over all 32 bytes was a
/// tenth of a gc's time at 100k objects.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Fold whatever arrives (a length prefix, then the key bytes).
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(word);
    }
}

/// A set of keys that are hashes, with [`KeyHasher`].
pub type HashKeySet<T> = std::collections::HashSet<T, std::hash::BuildHasherDefault<KeyHasher>>;
