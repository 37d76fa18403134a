//! Incompressible content stored as it is, inside a zstd frame of raw blocks.
//!
//! Compressed files (`.gz` documentation, images, `.deb`s, firmware) make
//! up much of a real `/usr`, and zstd spends its whole match search on them
//! to save nothing. The first block of an object tells: if zstd cannot
//! shrink it, the object is written as a frame of raw blocks, which costs a
//! copy. A raw-block frame is an ordinary zstd frame (RFC 8878, section
//! 3.1.1.2, `Block_Type` 0), so every reader, old and new, reads it with
//! no format change and no flag to look up.

use std::io::{self, Write};

/// An object up to this size is compressed whole to decide, and the result
/// kept if it is worth it.
pub(crate) const PROBE: usize = 128 * 1024;

/// A larger object is decided on three samples this long (start, middle,
/// end), so that a compressed payload behind a plain header, or a plain
/// tail behind a compressed start, is not taken for the whole.
pub(crate) const SAMPLE: usize = 32 * 1024;

/// The most one raw block may hold: zstd's `Block_Maximum_Size`, which the
/// window declared in [`header`] does not lower.
const BLOCK: usize = 128 * 1024;

/// A probe that saves less than this share (in 1/100) is not worth
/// compressing: reading the object back is then a copy as well.
const MIN_SAVING_PERCENT: usize = 3;

const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// True if `compressed`, the frame of `plain` bytes, saves too little over
/// their raw-block frame to be worth decompressing on every read.
pub(crate) fn not_worth_it(plain: usize, compressed: usize) -> bool {
    compressed * 100 >= frame_len(plain) * (100 - MIN_SAVING_PERCENT)
}

/// Bits per byte above which a sample's bytes are spread evenly enough to
/// be compressed data (text is near 5, machine code near 6); only such
/// samples are given to zstd to be sure, so compressible objects pay a
/// byte count, not a second compression of their samples.
const RANDOM_BITS: f64 = 7.5;

/// True if the byte distribution of `samples` (order-0 entropy) looks like
/// compressed or random data.
pub(crate) fn looks_random(samples: &[&[u8]]) -> bool {
    let mut counts = [0u32; 256];
    let mut total = 0usize;
    for s in samples {
        for &b in *s {
            counts[usize::from(b)] += 1;
        }
        total += s.len();
    }
    let total = total as f64;
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / total;
            -p * p.log2()
        })
        .sum();
    bits > RANDOM_BITS
}

/// Where the samples of an object of `len` bytes (more than [`PROBE`]) start.
pub(crate) fn sample_offsets(len: u64) -> [u64; 3] {
    let last = len.saturating_sub(SAMPLE as u64);
    [0, last / 2, last]
}

/// The frame header for `size` bytes of content: the content size always
/// present (readers size their buffers from it), no checksum (the store
/// checks the BLAKE3 key instead), no dictionary. Content of one block is
/// a single segment (the shortest header); longer content declares a
/// 128 KiB window, so a streaming decoder needs no window the object's size.
fn header(size: u64) -> Vec<u8> {
    let single = size <= BLOCK as u64;
    let mut out = MAGIC.to_vec();
    // Frame_Content_Size_Flag: 0 is one byte (single segment only), 1 is
    // two bytes holding size - 256 (for 256..=65791), 2 four, 3 eight.
    let (flag, fcs): (u8, Vec<u8>) = match size {
        0..=255 if single => (0, vec![size as u8]),
        256..=65_791 => (1, ((size - 256) as u16).to_le_bytes().to_vec()),
        _ => match u32::try_from(size) {
            Ok(s) => (2, s.to_le_bytes().to_vec()),
            Err(_) => (3, size.to_le_bytes().to_vec()),
        },
    };
    out.push(flag << 6 | u8::from(single) << 5);
    if !single {
        // Window_Descriptor: exponent 7 (2^(10+7) = 128 KiB), mantissa 0.
        out.push(7 << 3);
    }
    out.extend_from_slice(&fcs);
    out
}

/// The length of the raw-block frame of `size` bytes.
pub(crate) fn frame_len(size: usize) -> usize {
    header(size as u64).len() + 3 * size.div_ceil(BLOCK).max(1) + size
}

/// The three-byte header of a raw block of `len` bytes (at most [`BLOCK`]).
fn block_header(len: usize, last: bool) -> [u8; 3] {
    let v = (len as u32) << 3 | u32::from(last);
    let b = v.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// The whole raw-block frame of `bytes`.
pub(crate) fn frame(bytes: &[u8]) -> Vec<u8> {
    let blocks = bytes.len().div_ceil(BLOCK).max(1);
    let mut out = header(bytes.len() as u64);
    out.reserve(bytes.len() + 3 * blocks);
    if bytes.is_empty() {
        out.extend_from_slice(&block_header(0, true));
    }
    let mut chunks = bytes.chunks(BLOCK).peekable();
    while let Some(chunk) = chunks.next() {
        out.extend_from_slice(&block_header(chunk.len(), chunks.peek().is_none()));
        out.extend_from_slice(chunk);
    }
    out
}

/// Writes a raw-block frame of exactly `size` bytes to `inner` as they come:
/// a full block is written once the next byte shows it is not the last,
/// with its header in one write (and the frame's header with the first).
pub(crate) struct FrameWriter<W: Write> {
    inner: W,
    size: u64,
    seen: u64,
    /// What is not written yet: the frame's header until the first block
    /// goes, room for the block's header at `at`, then the block's bytes.
    buf: Vec<u8>,
    at: usize,
}

impl<W: Write> FrameWriter<W> {
    pub(crate) fn new(inner: W, size: u64) -> FrameWriter<W> {
        let mut buf = header(size);
        let at = buf.len();
        buf.reserve(3 + BLOCK);
        buf.extend_from_slice(&[0; 3]);
        FrameWriter {
            inner,
            size,
            seen: 0,
            buf,
            at,
        }
    }

    /// The block held, written behind its header.
    fn emit(&mut self, last: bool) -> io::Result<()> {
        let len = self.buf.len() - self.at - 3;
        self.buf[self.at..self.at + 3].copy_from_slice(&block_header(len, last));
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 3]);
        self.at = 0;
        Ok(())
    }

    /// Writes the last block; fails if the content was not `size` bytes.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        if self.seen != self.size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the content is not the size announced",
            ));
        }
        self.emit(true)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.seen + data.len() as u64 > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "more content than the size announced",
            ));
        }
        let room = |w: &Self| w.at + 3 + BLOCK - w.buf.len();
        if room(self) == 0 {
            self.emit(false)?;
        }
        let n = data.len().min(room(self));
        self.buf.extend_from_slice(&data[..n]);
        self.seen += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes zstd cannot shrink.
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    const SIZES: [usize; 11] = [
        0,
        1,
        255,
        BLOCK - 1,
        256,
        65_791,
        65_792,
        BLOCK,
        BLOCK + 1,
        3 * BLOCK,
        3 * BLOCK + 7,
    ];

    #[test]
    fn frames_read_back_with_zstd_in_bulk_and_streaming() {
        for len in SIZES {
            let plain = noise(len);
            let f = frame(&plain);
            assert_eq!(
                zstd::zstd_safe::get_frame_content_size(&f).ok(),
                Some(Some(len as u64)),
                "{len}"
            );
            assert_eq!(
                zstd::zstd_safe::find_frame_compressed_size(&f).ok(),
                Some(f.len())
            );
            let mut d = zstd::bulk::Decompressor::new().expect("context");
            assert_eq!(d.decompress(&f, len).expect("bulk"), plain, "{len}");
            assert_eq!(zstd::stream::decode_all(&f[..]).expect("stream"), plain);
        }
    }

    #[test]
    fn the_writer_makes_the_same_frame_whatever_the_write_sizes() {
        for len in SIZES {
            let plain = noise(len);
            for step in [1usize, 1000, BLOCK, BLOCK + 5] {
                let mut w = FrameWriter::new(Vec::new(), len as u64);
                for chunk in plain.chunks(step) {
                    w.write_all(chunk).expect("write");
                }
                assert_eq!(
                    w.finish().expect("finish"),
                    frame(&plain),
                    "{len} by {step}"
                );
            }
        }
    }

    #[test]
    fn the_writer_refuses_content_of_another_size() {
        let mut w = FrameWriter::new(Vec::new(), 10);
        w.write_all(b"12345").expect("write");
        assert!(w.finish().is_err());
        let mut w = FrameWriter::new(Vec::new(), 3);
        assert!(w.write_all(b"1234").is_err());
    }
}
