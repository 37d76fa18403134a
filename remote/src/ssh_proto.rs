//! The framed protocol `sysgen serve` speaks on stdin/stdout, under ssh.
//!
//! The server starts by writing [`MAGIC`]: a client that reads anything
//! else (a login banner, "command not found") says what it got instead of
//! misreading frames. Then the client sends requests and the server answers
//! each in order, one at a time. A frame is
//!
//! ```text
//! u32 big-endian  length of the header
//! header          JSON: a Request or a Reply
//! u64 big-endian  length of the body
//! body            bytes: an object, or a swap's expected then new value
//! ```
//!
//! Headers are small JSON documents so that the protocol stays readable
//! in a trace and easy to extend (a new field is ignored by an old peer);
//! bodies are raw bytes, never base64. `has` carries a whole batch of keys
//! in one request: one round trip per batch.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// The server's first bytes: the protocol and its version.
pub const MAGIC: &[u8] = b"sysgen-serve 1\n";

/// The largest header either side accepts: a `has` of a million keys fits.
pub const MAX_HEADER: u32 = 128 << 20;

/// The largest body either side accepts (larger than any object).
pub const MAX_BODY: u64 = 64 << 30;

/// What the client asks.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Has {
        keys: Vec<String>,
    },
    Get {
        key: String,
    },
    /// The body is the value.
    Put {
        key: String,
    },
    List {
        prefix: String,
    },
    /// The body is the expected value (`expected_len` bytes, when there is
    /// one) followed by the new value.
    Swap {
        key: String,
        expected_len: Option<u64>,
    },
}

/// What the server answers.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Has {
        present: Vec<bool>,
    },
    /// The body is the value when `found`.
    Got {
        found: bool,
    },
    Put,
    Keys {
        keys: Vec<String>,
    },
    /// Not `done`: the body is what the key holds now, when `found`.
    Swapped {
        done: bool,
        found: bool,
    },
    /// The operation failed on the server: its message, and which kind
    /// of failure, so that the client's exit code is the one a local
    /// failure of that kind gets.
    Failed {
        message: String,
        #[serde(default)]
        kind: FailKind,
    },
}

/// The kinds of [`crate::Error`] a client tells apart.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, Clone, Copy, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailKind {
    /// Bad input (a bad key, a request the server cannot take): exit 2.
    Invalid,
    /// Content refused (unsigned, forged, replayed, not for this host).
    Refused,
    /// Bytes that do not match their hash.
    Corrupt,
    /// Another writer moved the ref first.
    Lost,
    /// Anything else (I/O, the state): exit 1.
    #[default]
    Other,
}

impl FailKind {
    /// The kind of `e`, and the message that goes with it (without the
    /// server's own name for its state, which the client replaces by the
    /// URL).
    pub fn of(e: &crate::Error) -> (FailKind, String) {
        use crate::Error as E;
        match e {
            E::Invalid(m) => (FailKind::Invalid, m.clone()),
            E::Refused { why, .. } => (FailKind::Refused, why.clone()),
            E::Corrupt { why, .. } => (FailKind::Corrupt, why.clone()),
            E::Lost { .. } => (FailKind::Lost, String::new()),
            E::Remote { message, .. } => (FailKind::Other, message.clone()),
            E::State(s) if s.is_invalid_input() => (FailKind::Invalid, s.to_string()),
            E::State(s) => (FailKind::Other, s.to_string()),
        }
    }

    /// The client's error for a failure the server reported on `key`.
    pub fn error(self, remote: &str, key: &str, message: String) -> crate::Error {
        use crate::Error as E;
        let (remote, key) = (remote.to_owned(), key.to_owned());
        match self {
            FailKind::Invalid => E::Invalid(format!("{remote}: {key}: {message}")),
            FailKind::Refused => E::Refused {
                remote,
                key,
                why: message,
            },
            FailKind::Corrupt => E::Corrupt {
                remote,
                key,
                why: message,
            },
            FailKind::Lost => E::Lost { remote, key },
            FailKind::Other => E::Remote {
                remote,
                key,
                message: format!("on the remote: {message}"),
            },
        }
    }
}

/// Writes one frame and flushes it.
pub fn write_frame<T: Serialize>(w: &mut impl Write, header: &T, body: &[&[u8]]) -> io::Result<()> {
    let h = serde_json::to_vec(header).map_err(io::Error::other)?;
    let hlen = u32::try_from(h.len())
        .ok()
        .filter(|n| *n <= MAX_HEADER)
        .ok_or_else(|| io::Error::other("a frame header over the limit"))?;
    let blen: u64 = body.iter().map(|b| b.len() as u64).sum();
    w.write_all(&hlen.to_be_bytes())?;
    w.write_all(&h)?;
    w.write_all(&blen.to_be_bytes())?;
    for b in body {
        w.write_all(b)?;
    }
    w.flush()
}

/// Reads one frame: the header decoded, and the body. `Ok(None)` when the
/// stream ends cleanly before a frame; an end inside one is an error (a
/// peer killed halfway: nothing it sent in that frame is used).
pub fn read_frame<T: for<'de> Deserialize<'de>>(
    r: &mut impl Read,
) -> io::Result<Option<(T, Vec<u8>)>> {
    let mut len = [0u8; 4];
    loop {
        match r.read(&mut len[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    r.read_exact(&mut len[1..])?;
    let hlen = u32::from_be_bytes(len);
    if hlen > MAX_HEADER {
        return Err(bad(format!(
            "a frame header of {hlen} bytes (the limit is {MAX_HEADER})"
        )));
    }
    let h = read_exactly(r, u64::from(hlen))?;
    let header = serde_json::from_slice(&h)
        .map_err(|e| bad(format!("a frame header that is not a known message: {e}")))?;
    let mut blen = [0u8; 8];
    r.read_exact(&mut blen)?;
    let blen = u64::from_be_bytes(blen);
    if blen > MAX_BODY {
        return Err(bad(format!(
            "a frame body of {blen} bytes (the limit is {MAX_BODY})"
        )));
    }
    Ok(Some((header, read_exactly(r, blen)?)))
}

/// Exactly `n` bytes, read without trusting `n` for the allocation (a
/// damaged length must not allocate gigabytes before the stream ends).
fn read_exactly(r: &mut impl Read, n: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n.min(1 << 20) as usize);
    r.take(n).read_to_end(&mut buf)?;
    if buf.len() as u64 != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the stream ended {} bytes into a {n}-byte part of a frame",
                buf.len()
            ),
        ));
    }
    Ok(buf)
}

fn bad(m: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_cut_frame_is_an_error() {
        let mut buf = Vec::new();
        let req = Request::Swap {
            key: "refs/hosts/a".into(),
            expected_len: Some(3),
        };
        write_frame(&mut buf, &req, &[b"old", b"new!"]).expect("write");
        let (got, body): (Request, Vec<u8>) = read_frame(&mut buf.as_slice())
            .expect("read")
            .expect("a frame");
        assert_eq!(got, req);
        assert_eq!(body, b"oldnew!");
        // The wire form is what the module comment says.
        let h = br#"{"op":"swap","key":"refs/hosts/a","expected_len":3}"#;
        let mut want = (h.len() as u32).to_be_bytes().to_vec();
        want.extend_from_slice(h);
        want.extend_from_slice(&7u64.to_be_bytes());
        want.extend_from_slice(b"oldnew!");
        assert_eq!(buf, want);
        // A clean end before a frame; a cut anywhere inside one fails.
        assert!(read_frame::<Request>(&mut &b""[..]).expect("eof").is_none());
        for cut in 1..buf.len() {
            let r = read_frame::<Request>(&mut &buf[..cut]);
            assert!(r.is_err(), "a frame cut at {cut} was accepted");
        }
        // A length over the limit is refused before anything is allocated.
        let mut huge = (MAX_HEADER + 1).to_be_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        let e = read_frame::<Request>(&mut huge.as_slice()).expect_err("refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
