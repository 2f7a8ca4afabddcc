//! The deterministic byte pattern that `hop-lab serve source` sends, so a test can check
//! every byte that came through a forward without storing what was sent.
//!
//! Byte `i` of a stream is `((i mod 256) * 31 + 7) mod 256`. Because 31 is odd, each
//! period of 256 bytes holds every byte value once (so a shifted, dropped or duplicated
//! byte shows up), and because 256 divides 1 MiB, a precomputed 1 MiB chunk can be
//! written again and again with offsets lining up: [`chunk`] is that buffer, and a sender
//! reaches memory speed.
//!
//! # Example
//!
//! ```
//! use aws_hop_lab::pattern;
//!
//! assert_eq!(pattern::byte(0), 7);
//! assert_eq!(pattern::byte(1), 38);
//! let mut data = vec![0; 1000];
//! pattern::fill(300, &mut data);
//! assert_eq!(pattern::verify(300, &data), Ok(()));
//! assert_eq!(pattern::verify(301, &data), Err(301));
//! ```

use std::io::{self, Read, Write};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The pattern repeats every 256 bytes.
pub const PERIOD: usize = 256;
/// Size of [`chunk`]: 1 MiB, a multiple of [`PERIOD`].
pub const CHUNK: usize = 1 << 20;

/// Byte number `offset` of the pattern.
pub fn byte(offset: u64) -> u8 {
    // offset mod 256, then * 31 + 7 mod 256: u8 wrapping arithmetic is exactly that.
    (offset as u8).wrapping_mul(31).wrapping_add(7)
}

/// Fills `buf` with the pattern starting at stream offset `offset`.
pub fn fill(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = byte(offset + i as u64);
    }
}

/// Checks that `data` is the pattern from stream offset `offset`; on a mismatch, the
/// stream offset of the first wrong byte.
pub fn verify(offset: u64, data: &[u8]) -> Result<(), u64> {
    // Compare against slices of the precomputed chunk (memcmp speed): the chunk from
    // index `offset mod PERIOD` on is the pattern from `offset` on.
    let chunk = chunk();
    let mut pos = 0;
    while pos < data.len() {
        let start = ((offset + pos as u64) % PERIOD as u64) as usize;
        let k = (data.len() - pos).min(CHUNK - start);
        let (got, want) = (&data[pos..pos + k], &chunk[start..start + k]);
        if got != want {
            let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            return Err(offset + (pos + i) as u64);
        }
        pos += k;
    }
    Ok(())
}

/// The first 1 MiB of the pattern (computed once). Any chunk starting at a multiple of
/// [`PERIOD`] is a prefix of it.
pub fn chunk() -> &'static [u8] {
    static CHUNK_BUF: OnceLock<Vec<u8>> = OnceLock::new();
    CHUNK_BUF.get_or_init(|| {
        let mut buf = vec![0; CHUNK];
        fill(0, &mut buf);
        buf
    })
}

/// Writes the first `n` bytes of the pattern to `w`, 1 MiB at a time.
pub fn write(w: &mut impl Write, n: u64) -> io::Result<()> {
    let chunk = chunk();
    let mut left = n;
    while left > 0 {
        let k = left.min(CHUNK as u64) as usize;
        w.write_all(&chunk[..k])?;
        left -= k as u64;
    }
    Ok(())
}

/// Reads `r` to EOF, checking every byte against the pattern from offset 0. Returns the
/// byte count, or an `InvalidData` error naming the offset of the first wrong byte.
pub fn read_and_verify(r: &mut impl Read) -> io::Result<u64> {
    let mut buf = vec![0; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Err(at) = verify(total, &buf[..n]) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("pattern mismatch at byte {at}"),
            ));
        }
        total += n as u64;
    }
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lowercase hex SHA-256 of the first `n` bytes of the pattern: what `sink` replies after
/// receiving them.
pub fn sha256_hex_of_pattern(n: u64) -> String {
    let mut hasher = Sha256::new();
    let chunk = chunk();
    let mut left = n;
    while left > 0 {
        let k = left.min(CHUNK as u64) as usize;
        hasher.update(&chunk[..k]);
        left -= k as u64;
    }
    hex(&hasher.finalize())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_holds_every_byte_once() {
        let mut seen: Vec<u8> = (0..PERIOD as u64).map(byte).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..=255).collect::<Vec<u8>>());
        assert_eq!(byte(5), byte(5 + PERIOD as u64));
    }

    #[test]
    fn chunk_lines_up_across_writes() {
        let mut out = Vec::new();
        write(&mut out, CHUNK as u64 + 1000).unwrap();
        assert_eq!(out.len(), CHUNK + 1000);
        assert_eq!(verify(0, &out), Ok(()));
        assert_eq!(
            read_and_verify(&mut out.as_slice()).unwrap(),
            out.len() as u64
        );
    }

    #[test]
    fn verify_finds_the_first_wrong_byte_past_a_chunk() {
        let mut data = vec![0; CHUNK + 1000];
        fill(100, &mut data);
        assert_eq!(verify(100, &data), Ok(()));
        data[CHUNK + 5] ^= 1;
        data[CHUNK + 9] ^= 1;
        assert_eq!(verify(100, &data), Err(100 + CHUNK as u64 + 5));
    }

    #[test]
    fn sha_of_pattern_matches_sha_of_bytes() {
        let mut out = Vec::new();
        write(&mut out, 3000).unwrap();
        assert_eq!(sha256_hex_of_pattern(3000), sha256_hex(&out));
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
