//! Classification of one Foo protocol line. Pure: no I/O, no allocation.
//!
//! ```text
//! Msg  := Type ' ' Seq [' ' Data] '\n'
//! Type := "REQ" | "ACK" | "NAK"
//! Seq  := decimal digits
//! ```
//!
//! Decisions, kept in line with what the real Foo server accepts:
//! - one trailing `\r` before the newline is accepted and ignored (`REQ 1\r\n` is a REQ);
//! - exactly one space separates the fields; the type is upper case;
//! - `Seq` is unsigned decimal digits that fit in a `u64`; a longer or larger number (seq
//!   overflow) is **malformed**, like any other line the server would answer with
//!   `NAK 0 ERRDECODE`; there is no saturation, so counts never depend on a clipped value;
//! - `Data` is opaque: any bytes except `\n` (it is not checked for UTF-8), so the class of a
//!   line is decided by its first few bytes, see [`HEAD_BYTES`];
//! - an empty line, a bare `\r`, binary garbage or an unknown type is malformed.

/// How many leading bytes of a line decide its class. Type (3) + space (1) + at most 20 digits
/// of a `u64` + the byte after the digits (1) + a possible `\r` (1) is 26; anything beyond the
/// 26th byte is `Data`, which never changes the class. 40 leaves a margin.
pub const HEAD_BYTES: usize = 40;

/// Longest decimal representation of a `u64` (`18446744073709551615`).
const MAX_SEQ_DIGITS: usize = 20;

/// What one line is, as far as the statistics are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// `REQ <seq> [data]`, sent by clients.
    Req { seq: u64 },
    /// `ACK <seq> [data]`, sent by the server.
    Ack { seq: u64 },
    /// `NAK <seq> [data]`, sent by the server.
    Nak { seq: u64 },
    /// Anything else; still forwarded unchanged, counted separately.
    Malformed,
}

impl Frame {
    /// Classifies one line given without its terminating `\n`.
    ///
    /// `line` may also be just the first [`HEAD_BYTES`] (or more) bytes of a longer line
    /// followed by `truncated = true`: the result is the same as for the whole line.
    pub fn parse(line: &[u8]) -> Frame {
        Self::parse_head(line, false)
    }

    /// Like [`Frame::parse`], for the head of a line that continues beyond `head` when
    /// `truncated` is true (so a trailing `\r` in `head` is not the line's last byte).
    pub fn parse_head(head: &[u8], truncated: bool) -> Frame {
        let line = match head.split_last() {
            Some((b'\r', rest)) if !truncated => rest,
            _ => head,
        };
        let Some((kind, rest)) = line.split_at_checked(3) else { return Frame::Malformed };
        let Some((b' ', rest)) = rest.split_first() else { return Frame::Malformed };
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > MAX_SEQ_DIGITS {
            return Frame::Malformed;
        }
        let (seq_text, after) = rest.split_at(digits);
        match after.first() {
            None | Some(b' ') => {}
            Some(_) => return Frame::Malformed,
        }
        let Some(seq) = parse_decimal(seq_text) else { return Frame::Malformed };
        match kind {
            b"REQ" => Frame::Req { seq },
            b"ACK" => Frame::Ack { seq },
            b"NAK" => Frame::Nak { seq },
            _ => Frame::Malformed,
        }
    }
}

/// Parses ASCII digits into a `u64`; `None` on overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_lines() {
        assert_eq!(Frame::parse(b"REQ 1 Hey"), Frame::Req { seq: 1 });
        assert_eq!(Frame::parse(b"ACK 1 Hello"), Frame::Ack { seq: 1 });
        assert_eq!(Frame::parse(b"ACK 2"), Frame::Ack { seq: 2 });
        assert_eq!(Frame::parse(b"NAK 6 Stop doing that"), Frame::Nak { seq: 6 });
        assert_eq!(Frame::parse(b"REQ 0"), Frame::Req { seq: 0 });
        assert_eq!(Frame::parse(b"REQ 7 "), Frame::Req { seq: 7 }, "empty data");
        assert_eq!(Frame::parse(b"REQ 7  two  spaces in data"), Frame::Req { seq: 7 });
        assert_eq!(Frame::parse(b"REQ 7 \xff\xfe binary data"), Frame::Req { seq: 7 });
    }

    #[test]
    fn trailing_carriage_return_is_accepted() {
        assert_eq!(Frame::parse(b"REQ 1\r"), Frame::Req { seq: 1 });
        assert_eq!(Frame::parse(b"NAK 3 why\r"), Frame::Nak { seq: 3 });
        assert_eq!(Frame::parse(b"REQ 1\rx"), Frame::Malformed, "\\r only allowed last");
        assert_eq!(Frame::parse(b"\r"), Frame::Malformed);
    }

    #[test]
    fn malformed_lines() {
        for line in [
            &b""[..],
            b" ",
            b"REQ",
            b"REQ ",
            b"REQ x",
            b"REQ 1x",
            b"REQ -1",
            b"REQ +1",
            b"REQ  1",
            b"req 1",
            b"FOO 1",
            b"REQ\t1",
            b"\x00\x01\x02\xff garbage",
            b"REQ1",
        ] {
            assert_eq!(Frame::parse(line), Frame::Malformed, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn seq_overflow_is_malformed() {
        assert_eq!(Frame::parse(b"REQ 18446744073709551615"), Frame::Req { seq: u64::MAX });
        assert_eq!(Frame::parse(b"REQ 18446744073709551616"), Frame::Malformed);
        assert_eq!(Frame::parse(b"REQ 99999999999999999999"), Frame::Malformed);
        assert_eq!(Frame::parse(b"REQ 000000000000000000001"), Frame::Malformed, "21 digits");
        assert_eq!(Frame::parse(b"REQ 00000000000000000001"), Frame::Req { seq: 1 }, "20 digits");
    }

    #[test]
    fn head_of_a_long_line_classifies_like_the_whole_line() {
        let long_data = "d".repeat(100);
        let digits30 = "1".repeat(30);
        let samples = [
            format!("REQ 1 {long_data}"),
            format!("REQ 1\r{long_data}"),
            format!("REQ {digits30} {long_data}"),
            format!("NAK 18446744073709551615 {long_data}"),
            format!("XYZ 1 {long_data}"),
            format!("ACK 123{long_data}"),
            format!("ACK {}\r{long_data}", "1".repeat(HEAD_BYTES - 5)),
        ];
        for line in &samples {
            let bytes = line.as_bytes();
            assert!(bytes.len() > HEAD_BYTES);
            assert_eq!(Frame::parse_head(&bytes[..HEAD_BYTES], true), Frame::parse(bytes), "{line}");
        }
    }
}
