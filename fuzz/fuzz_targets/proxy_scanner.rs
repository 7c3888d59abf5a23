//! The Foo proxy's line scanner (`proxy::scanner`) and line classifier (`proxy::frame`) on
//! arbitrary bytes cut into arbitrary chunks, as TCP delivers them to the relay.
//!
//! Input: 2 bytes choose the line limit, 2 bytes seed the chunk sizes, the rest is the stream.
//! Properties:
//! - every chunking gives the same counts, and refuses the same over-long line, as one chunk
//!   and as a reference that splits the whole stream at `\n` and classifies each whole line
//!   with `Frame::parse` (the scanner only keeps the head of a line);
//! - `forwardable` points exactly at the start of the over-long line (or 0 when it began in
//!   an earlier chunk, which the relay has already forwarded);
//! - scanning never allocates: memory per connection direction is constant.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;
use proxy::frame::Frame;
use proxy::scanner::{LineScanner, Tally};

/// Counts allocations made through Rust's allocator.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What the scanner must report for `stream`: the counts of the lines before the first
/// over-long one, and that line's start offset if there is one.
fn reference(stream: &[u8], max: usize) -> (Tally, Option<usize>) {
    let mut tally = Tally::default();
    let mut start = 0;
    let mut count = |line: &[u8]| match Frame::parse(line) {
        Frame::Req { .. } => tally.req += 1,
        Frame::Ack { .. } => tally.ack += 1,
        Frame::Nak { .. } => tally.nak += 1,
        Frame::Malformed => tally.malformed += 1,
    };
    loop {
        let end = stream[start..].iter().position(|&b| b == b'\n').map(|i| start + i);
        let line = &stream[start..end.unwrap_or(stream.len())];
        if line.len() > max {
            return (tally, Some(start));
        }
        match end {
            Some(end) => {
                count(line);
                start = end + 1;
            }
            None => {
                if !line.is_empty() {
                    count(line);
                }
                return (tally, None);
            }
        }
    }
}

/// Scans `stream` cut at `cuts`; returns the counts and, on refusal, where the failing chunk
/// starts in the stream and how much of it may still be forwarded.
fn scan(stream: &[u8], cuts: &[usize], max: usize) -> (Tally, Option<(usize, usize)>) {
    let mut scanner = LineScanner::new(max);
    let mut tally = Tally::default();
    let mut chunk_start = 0;
    for &end in cuts.iter().chain(std::iter::once(&stream.len())) {
        let chunk = &stream[chunk_start..end];
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let result = scanner.scan(chunk, &mut tally);
        assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), before, "scan allocated");
        if let Err(e) = result {
            assert_eq!(e.max_line_bytes, max);
            assert!(e.forwardable <= chunk.len());
            return (tally, Some((chunk_start, e.forwardable)));
        }
        chunk_start = end;
    }
    scanner.finish(&mut tally);
    (tally, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((head, stream)) = data.split_first_chunk::<4>() else { return };
    let limit = u16::from_le_bytes([head[0], head[1]]);
    // Mostly small limits, so over-long lines are common; sometimes the default 64 KiB.
    let max = if limit & 0x8000 != 0 { 65_536 } else { usize::from(limit % 128) };
    let mut seed = u32::from(u16::from_le_bytes([head[2], head[3]])) | 1;
    let mut cuts = Vec::new();
    let mut at = 0;
    loop {
        // xorshift: chunk sizes 0..=16 (0: an empty read between two others).
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        at += (seed % 17) as usize;
        if at >= stream.len() {
            break;
        }
        cuts.push(at);
    }

    let (want_tally, want_refused) = reference(stream, max);
    for cuts in [&[][..], &cuts] {
        let (tally, refused) = scan(stream, cuts, max);
        assert_eq!(tally, want_tally, "counts, chunked at {cuts:?}");
        match (refused, want_refused) {
            (None, None) => {}
            // The failing chunk forwards up to the line's start, or nothing if the line began
            // in an earlier chunk (whose bytes the relay has already forwarded).
            (Some((chunk_start, forwardable)), Some(line_start)) => {
                assert_eq!(chunk_start + forwardable, line_start.max(chunk_start), "forwardable, chunked at {cuts:?}")
            }
            other => panic!("refusal differs: {other:?}, chunked at {cuts:?}"),
        }
    }
});
