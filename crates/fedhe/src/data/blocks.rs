//! Cuts a byte stream into blocks of whole CSV records, so blocks can be
//! parsed in parallel while the file is still streamed (bounded memory).

use std::io::Read;

/// Target block size; a block always ends at a record boundary.
pub(crate) const BLOCK_BYTES: usize = 4 << 20;
/// A single record longer than this is refused rather than buffered.
pub(crate) const MAX_RECORD_BYTES: usize = 64 << 20;

/// A run of whole records and the 1-based line its first byte is on.
pub(crate) struct Block {
    pub bytes: Vec<u8>,
    pub first_line: u64,
}

pub(crate) struct BlockReader<R> {
    input: R,
    carry: Vec<u8>,
    next_line: u64,
    eof: bool,
}

impl<R: Read> BlockReader<R> {
    pub fn new(input: R) -> Self {
        Self {
            input,
            carry: Vec::new(),
            next_line: 1,
            eof: false,
        }
    }

    /// The line the next block starts on.
    pub fn next_line(&self) -> u64 {
        self.next_line
    }

    /// The next block, `None` at the end. A record longer than
    /// [`MAX_RECORD_BYTES`] is an error naming its first line.
    pub fn next_block(&mut self) -> std::io::Result<Option<Block>> {
        let mut buf = std::mem::take(&mut self.carry);
        loop {
            while !self.eof && buf.len() < BLOCK_BYTES {
                let start = buf.len();
                buf.resize(start + (BLOCK_BYTES - start).max(64 << 10), 0);
                let n = loop {
                    match self.input.read(&mut buf[start..]) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                };
                buf.truncate(start + n);
                if n == 0 {
                    self.eof = true;
                }
            }
            if buf.is_empty() {
                return Ok(None);
            }
            let cut = if self.eof {
                Some(buf.len())
            } else {
                last_record_end(&buf)
            };
            match cut {
                Some(cut) => {
                    self.carry = buf.split_off(cut);
                    let first_line = self.next_line;
                    self.next_line += memchr::memchr_iter(b'\n', &buf).count() as u64;
                    return Ok(Some(Block {
                        bytes: buf,
                        first_line,
                    }));
                }
                None if buf.len() >= MAX_RECORD_BYTES => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "a record starting on line {} is longer than {} MB",
                            self.next_line,
                            MAX_RECORD_BYTES >> 20
                        ),
                    ));
                }
                None => {
                    // One record spans the whole buffer: read more of it.
                    let more = buf.len() + BLOCK_BYTES;
                    let start = buf.len();
                    buf.resize(more, 0);
                    let n = self.input.read(&mut buf[start..])?;
                    buf.truncate(start + n);
                    if n == 0 {
                        self.eof = true;
                    }
                }
            }
        }
    }
}

/// Offset just past the last newline that is outside quotes, if any. Quote
/// state toggles on every `"` (an escaped `""` toggles twice), and a block
/// always starts outside quotes.
fn last_record_end(buf: &[u8]) -> Option<usize> {
    if memchr::memchr(b'"', buf).is_none() {
        return memchr::memrchr(b'\n', buf).map(|i| i + 1);
    }
    let mut inside = false;
    let mut last = None;
    for i in memchr::memchr2_iter(b'"', b'\n', buf) {
        if buf[i] == b'"' {
            inside = !inside;
        } else if !inside {
            last = Some(i + 1);
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_only_outside_quotes() {
        assert_eq!(last_record_end(b"a,b\n1,2\n3"), Some(8));
        assert_eq!(last_record_end(b"a,\"x\ny\"\n1,\"z\n"), Some(8));
        assert_eq!(last_record_end(b"\"a\nb"), None);
    }

    #[test]
    fn blocks_cover_the_input_and_count_lines() {
        let mut text = Vec::new();
        for i in 0..400_000 {
            text.extend_from_slice(format!("{i},\"q\nq\",{i}\n").as_bytes());
        }
        let mut r = BlockReader::new(&text[..]);
        let mut all = Vec::new();
        let mut blocks = 0;
        while let Some(b) = r.next_block().unwrap() {
            // Every block starts at a record: line numbers advance by 2 per record.
            assert_eq!((b.first_line - 1) % 2, 0);
            assert!(b.bytes.ends_with(b"\n"));
            all.extend_from_slice(&b.bytes);
            blocks += 1;
        }
        assert!(blocks > 1);
        assert_eq!(all, text);
    }
}
