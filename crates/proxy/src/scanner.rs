//! Streaming line observer: finds the Foo lines in a byte stream as it flows through the
//! relay, without copying or changing the bytes.
//!
//! Only the first [`HEAD_BYTES`] of the current line are kept (that is all
//! [`Frame::parse_head`] needs), so memory per direction is constant whatever the line
//! length; the length itself is tracked to enforce the maximum line size.

use crate::frame::{Frame, HEAD_BYTES};

/// Messages counted in one piece of traffic; added to the shared stats in one step.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub req: u64,
    pub ack: u64,
    pub nak: u64,
    pub malformed: u64,
}

impl Tally {
    pub fn is_empty(&self) -> bool {
        *self == Tally::default()
    }

    fn count(&mut self, frame: Frame) {
        match frame {
            Frame::Req { .. } => self.req += 1,
            Frame::Ack { .. } => self.ack += 1,
            Frame::Nak { .. } => self.nak += 1,
            Frame::Malformed => self.malformed += 1,
        }
    }
}

/// A line grew beyond the configured maximum before its newline arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line longer than {max_line_bytes} bytes")]
pub struct LineTooLong {
    pub max_line_bytes: usize,
    /// Bytes of the scanned chunk that end with its last complete line before the over-long
    /// one; the relay still forwards those so that complete messages are not lost.
    pub forwardable: usize,
}

/// Per-direction line state carried from one chunk to the next.
#[derive(Debug)]
pub struct LineScanner {
    head: [u8; HEAD_BYTES],
    head_len: usize,
    /// Bytes of the current (unfinished) line seen so far, newline excluded.
    line_len: usize,
    max_line_bytes: usize,
}

impl LineScanner {
    pub fn new(max_line_bytes: usize) -> Self {
        LineScanner { head: [0; HEAD_BYTES], head_len: 0, line_len: 0, max_line_bytes }
    }

    /// Scans the next chunk of the stream, counting every line it completes into `tally`.
    pub fn scan(&mut self, chunk: &[u8], tally: &mut Tally) -> Result<(), LineTooLong> {
        let mut line_start = 0;
        for newline in memchr::memchr_iter(b'\n', chunk) {
            self.extend(&chunk[line_start..newline]).map_err(|()| self.too_long(line_start))?;
            tally.count(self.take_line());
            line_start = newline + 1;
        }
        self.extend(&chunk[line_start..]).map_err(|()| self.too_long(line_start))
    }

    /// End of stream: a last line without newline is still a message (the server reads it).
    pub fn finish(&mut self, tally: &mut Tally) {
        if self.line_len > 0 {
            tally.count(self.take_line());
        }
    }

    fn extend(&mut self, part: &[u8]) -> Result<(), ()> {
        self.line_len += part.len();
        if self.line_len > self.max_line_bytes {
            return Err(());
        }
        let room = HEAD_BYTES - self.head_len;
        let copied = room.min(part.len());
        self.head[self.head_len..self.head_len + copied].copy_from_slice(&part[..copied]);
        self.head_len += copied;
        Ok(())
    }

    fn take_line(&mut self) -> Frame {
        let frame = Frame::parse_head(&self.head[..self.head_len], self.line_len > self.head_len);
        self.head_len = 0;
        self.line_len = 0;
        frame
    }

    fn too_long(&self, forwardable: usize) -> LineTooLong {
        LineTooLong { max_line_bytes: self.max_line_bytes, forwardable }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(chunks: &[&[u8]], max: usize) -> (Tally, Result<(), LineTooLong>) {
        let mut scanner = LineScanner::new(max);
        let mut tally = Tally::default();
        for chunk in chunks {
            if let Err(e) = scanner.scan(chunk, &mut tally) {
                return (tally, Err(e));
            }
        }
        scanner.finish(&mut tally);
        (tally, Ok(()))
    }

    #[test]
    fn counts_pipelined_lines_in_one_chunk() {
        let (tally, res) = scan_all(&[b"REQ 1 a\nREQ 2\nACK 1\nNAK 2 no\n\ngarbage\n"], 1024);
        assert!(res.is_ok());
        assert_eq!(tally, Tally { req: 2, ack: 1, nak: 1, malformed: 2 });
    }

    #[test]
    fn split_writes_give_the_same_counts_at_every_split_point() {
        let stream: &[u8] = b"REQ 1 Hey\nACK 1 Hello\r\nREQ 18446744073709551616\nNAK 5 Stop it\n\nREQ 9";
        let (whole, _) = scan_all(&[stream], 1024);
        assert_eq!(whole, Tally { req: 2, ack: 1, nak: 1, malformed: 2 });
        for a in 0..stream.len() {
            for b in a..stream.len() {
                let (tally, res) = scan_all(&[&stream[..a], &stream[a..b], &stream[b..]], 1024);
                assert!(res.is_ok());
                assert_eq!(tally, whole, "split at {a},{b}");
            }
        }
    }

    #[test]
    fn partial_last_line_counts_at_end_of_stream() {
        let (tally, _) = scan_all(&[b"REQ 1\nREQ 2 no newline"], 1024);
        assert_eq!(tally.req, 2);
    }

    #[test]
    fn long_lines_within_the_limit_are_classified_by_their_head() {
        let mut line = b"REQ 42 ".to_vec();
        line.extend(std::iter::repeat_n(b'x', 5000));
        line.push(b'\n');
        let chunks: Vec<&[u8]> = line.chunks(7).collect();
        let (tally, res) = scan_all(&chunks, 5007);
        assert!(res.is_ok());
        assert_eq!(tally, Tally { req: 1, ..Tally::default() });
    }

    #[test]
    fn over_long_line_is_refused_with_the_forwardable_prefix() {
        let mut scanner = LineScanner::new(10);
        let mut tally = Tally::default();
        assert_eq!(scanner.scan(b"REQ 1\nREQ 2 0123", &mut tally), Ok(()));
        let err = scanner.scan(b"456789", &mut tally).unwrap_err();
        assert_eq!(err, LineTooLong { max_line_bytes: 10, forwardable: 0 });
        let mut scanner = LineScanner::new(10);
        let err = scanner.scan(b"REQ 1\nREQ 2\nREQ 3 this is too long\nREQ 4\n", &mut tally).unwrap_err();
        assert_eq!(err.forwardable, 12, "REQ 1 and REQ 2 may still go through");
        let mut scanner = LineScanner::new(10);
        assert!(scanner.scan(b"0123456789\n", &mut tally).is_ok(), "exactly the limit is allowed");
    }
}
