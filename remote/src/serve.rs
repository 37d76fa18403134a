//! The server side of `ssh://`: answers the framed protocol
//! ([`crate::ssh_proto`]) on a byte stream (stdin/stdout under ssh) from
//! any [`Transport`]; `sysgen serve` gives it the host's own state
//! directory. Requests are answered one at a time, in order.

use std::io::{BufReader, BufWriter, Read, Write};

use crate::Error;
use crate::ssh_proto::{FailKind, MAGIC, Reply, Request, read_frame, write_frame};
use crate::transport::{Swap, Transport};

/// What one session did, for the server's log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Served {
    pub requests: u64,
    /// Keys written (put, or a swap that was done).
    pub written: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Serves until the client closes the stream. A failed operation is
/// answered (the client reports it) and the session goes on; a stream that
/// breaks or carries something that is not the protocol ends it with an
/// error. A request cut off by a dying client is never carried out: a frame
/// is used only once all of it has arrived.
pub fn serve(t: &dyn Transport, input: impl Read, output: impl Write) -> Result<Served, Error> {
    let mut input = BufReader::new(input);
    let mut output = BufWriter::new(output);
    let who = t.describe();
    let broken = |e: std::io::Error| Error::Remote {
        remote: who.clone(),
        key: String::new(),
        message: format!("sysgen serve: the client's stream broke: {e}"),
    };
    output.write_all(MAGIC).map_err(broken)?;
    output.flush().map_err(broken)?;
    let mut served = Served::default();
    while let Some((req, body)) = read_frame::<Request>(&mut input).map_err(broken)? {
        served.requests += 1;
        served.bytes_in += body.len() as u64;
        let (reply, out): (Reply, Vec<u8>) = match answer(t, req, body, &mut served) {
            Ok(r) => r,
            Err(e) => {
                let (kind, message) = FailKind::of(&e);
                (Reply::Failed { message, kind }, Vec::new())
            }
        };
        served.bytes_out += out.len() as u64;
        write_frame(&mut output, &reply, &[&out]).map_err(broken)?;
    }
    Ok(served)
}

fn answer(
    t: &dyn Transport,
    req: Request,
    mut body: Vec<u8>,
    served: &mut Served,
) -> Result<(Reply, Vec<u8>), Error> {
    Ok(match req {
        Request::Has { keys } => (
            Reply::Has {
                present: t.has(&keys)?,
            },
            Vec::new(),
        ),
        Request::Get { key } => match t.get(&key)? {
            Some(v) => (Reply::Got { found: true }, v),
            None => (Reply::Got { found: false }, Vec::new()),
        },
        Request::Put { key } => {
            t.put(&key, &body)?;
            served.written += 1;
            (Reply::Put, Vec::new())
        }
        Request::List { prefix } => (
            Reply::Keys {
                keys: t.list(&prefix)?,
            },
            Vec::new(),
        ),
        Request::Swap { key, expected_len } => {
            let split = match expected_len {
                None => 0,
                Some(n) => usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= body.len())
                    .ok_or_else(|| Error::Remote {
                        remote: t.describe(),
                        key: key.clone(),
                        message: format!(
                            "a swap whose expected value ({n} bytes) is longer than its body ({} bytes)",
                            body.len()
                        ),
                    })?,
            };
            let new = body.split_off(split);
            let expected = expected_len.map(|_| body.as_slice());
            match t.swap(&key, expected, &new)? {
                Swap::Done => {
                    served.written += 1;
                    (
                        Reply::Swapped {
                            done: true,
                            found: false,
                        },
                        Vec::new(),
                    )
                }
                Swap::Lost(now) => (
                    Reply::Swapped {
                        done: false,
                        found: now.is_some(),
                    },
                    now.unwrap_or_default(),
                ),
            }
        }
    })
}
