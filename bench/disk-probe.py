#!/usr/bin/env python3
"""The disk alone, at the write load of a durable ingest run (issue 16).

Two threads and no server, in a directory on the disk under test:
- "WAL": WAL_BYTES written in place and fdatasync'ed, 1,000 times a second (a commit);
- "checkpoint": 4 KB pages at random offsets of a 1 GB file, PAGES_MB MB/s in 200 ms
  batches, fdatasync'ed every 2 s (the checkpointer copying WAL frames into the database).
Prints the WAL thread's sync latency and every sync over 20 ms (seconds in, ms).

    python3 bench/disk-probe.py SECONDS DIR [WAL_BYTES=16384] [PAGES_MB=19]
"""
import os
import random
import sys
import threading
import time

dur = float(sys.argv[1])
d = sys.argv[2]
wal_bytes = int(sys.argv[3]) if len(sys.argv) > 3 else 16384
pages_mb = int(sys.argv[4]) if len(sys.argv) > 4 else 19
os.makedirs(d, exist_ok=True)
wal = os.open(f"{d}/wal", os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(wal, 32 << 20)
db = os.open(f"{d}/db", os.O_RDWR | os.O_CREAT, 0o644)
print("writing the 1 GB page file first...", file=sys.stderr)
chunk = os.urandom(1 << 20)
for i in range(1024):
    os.pwrite(db, chunk, i << 20)
os.fsync(db)
os.fsync(wal)
stop = time.time() + dur


def checkpointer():
    page = os.urandom(4096)
    last = time.time()
    while time.time() < stop:
        t = time.perf_counter()
        for _ in range(pages_mb * 1024 * 1024 // 4096 // 5):
            os.pwrite(db, page, random.randrange(262144) * 4096)
        if time.time() - last > 2:
            os.fdatasync(db)
            last = time.time()
        w = 0.2 - (time.perf_counter() - t)
        if w > 0:
            time.sleep(w)


threading.Thread(target=checkpointer, daemon=True).start()
print(f"probing for {dur:.0f} s...", file=sys.stderr)
buf = os.urandom(wal_bytes)
off, lat, slow = 0, [], []
t0 = time.time()
nxt = time.perf_counter()
while time.time() < stop:
    os.pwrite(wal, buf, off)
    off = (off + wal_bytes) % (32 << 20)
    s = time.perf_counter()
    os.fdatasync(wal)
    ms = (time.perf_counter() - s) * 1000
    lat.append(ms)
    if ms > 20:
        slow.append((round(time.time() - t0, 1), round(ms)))
    nxt += 0.001
    w = nxt - time.perf_counter()
    if w > 0:
        time.sleep(w)
lat.sort()
n = len(lat)
print(f"WAL syncs: n={n} ({n / dur:.0f}/s) p50={lat[n // 2]:.2f} p99={lat[int(n * .99)]:.2f} "
      f"p99.9={lat[int(n * .999)]:.2f} max={lat[-1]:.1f} ms")
print(f"over 20 ms: {len(slow)}, over 100 ms: {sum(1 for _, m in slow if m > 100)}: {slow}")
