//! The `proxy_scanner` fuzz target's properties over a deterministic, generated corpus, so
//! every test run checks them (see FUZZING.md): however TCP cuts a stream into reads, the
//! line scanner counts the same messages and refuses the same over-long line as one read
//! and as a reference that classifies every whole line; and it never allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proxy::frame::Frame;
use proxy::scanner::{LineScanner, Tally};

/// Counts this thread's allocations.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// xorshift: reproducible pseudo-random numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Counts of the lines before the first over-long one, and that line's start offset.
fn reference(stream: &[u8], max: usize) -> (Tally, Option<usize>) {
    let mut tally = Tally::default();
    let mut count = |line: &[u8]| match Frame::parse(line) {
        Frame::Req { .. } => tally.req += 1,
        Frame::Ack { .. } => tally.ack += 1,
        Frame::Nak { .. } => tally.nak += 1,
        Frame::Malformed => tally.malformed += 1,
    };
    let mut start = 0;
    loop {
        let end = memchr_newline(&stream[start..]).map(|i| start + i);
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

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Scans `stream` cut at `cuts`: the counts and, on refusal, where the failing read
/// starts and how much of it may still be forwarded.
fn scan(stream: &[u8], cuts: &[usize], max: usize) -> (Tally, Option<(usize, usize)>) {
    let mut scanner = LineScanner::new(max);
    let mut tally = Tally::default();
    let mut chunk_start = 0;
    for &end in cuts.iter().chain(std::iter::once(&stream.len())) {
        let before = ALLOCATIONS.with(Cell::get);
        let result = scanner.scan(&stream[chunk_start..end], &mut tally);
        assert_eq!(ALLOCATIONS.with(Cell::get), before, "scan allocated");
        if let Err(e) = result {
            return (tally, Some((chunk_start, e.forwardable)));
        }
        chunk_start = end;
    }
    scanner.finish(&mut tally);
    (tally, None)
}

const SEEDS: &[&[u8]] = &[
    b"REQ 1 Hey\nACK 1 Hello\r\nNAK 2 Stop\n\nREQ 18446744073709551616\ngarbage\nREQ 3",
    b"REQ 1\nREQ 2 this line is too long\nREQ 3\n",
    b"REQ 42 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\nACK 00000000000000000001\r\n",
    b"ACK 18446744073709551615 \xff\xfe\r\nNAK 0\rx\n\r\n\n",
];

#[test]
fn every_chunking_counts_like_whole_lines() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for i in 0..20_000 {
        let mut stream = SEEDS[i % SEEDS.len()].to_vec();
        for _ in 0..rng.next() % 6 {
            let r = rng.next();
            let at = (r >> 8) as usize % (stream.len() + 1);
            match r % 3 {
                0 if at < stream.len() => stream[at] = b"\nREQ 19\r x"[(r >> 32) as usize % 10],
                1 if at < stream.len() => drop(stream.remove(at)),
                _ => stream.insert(at, (r >> 40) as u8),
            }
        }
        let max = (rng.next() % 48) as usize;
        let mut cuts = Vec::new();
        let mut at = 0;
        loop {
            at += (rng.next() % 9) as usize; // 0: an empty read
            if at >= stream.len() {
                break;
            }
            cuts.push(at);
        }
        let (want_tally, want_refused) = reference(&stream, max);
        for cuts in [&[][..], &cuts] {
            let (tally, refused) = scan(&stream, cuts, max);
            let what = format!("{:?} max {max} cut at {cuts:?}", String::from_utf8_lossy(&stream));
            assert_eq!(tally, want_tally, "{what}");
            match (refused, want_refused) {
                (None, None) => {}
                (Some((chunk_start, forwardable)), Some(line_start)) => {
                    assert_eq!(chunk_start + forwardable, line_start.max(chunk_start), "{what}")
                }
                other => panic!("refusal differs: {other:?}, {what}"),
            }
        }
    }
}
