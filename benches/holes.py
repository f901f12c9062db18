#!/usr/bin/env python3
"""What a commit's sync costs on this disk, by where its pages land: in a hole (the space
redb's `set_len` leaves), in space reserved with fallocate, or over blocks written before
(what `src/store/prefill.rs` gives redb). Each step writes what one redb commit under load
writes (ten scattered 4 KiB pages near the growing end, one 32 KiB value, the 320-byte
header) and `fdatasync`s; prints the median and p99 per layout.

    python3 benches/holes.py [DIR]      # DIR on the disk the store uses; default: benches/
"""
import os
import random
import statistics
import sys
import tempfile
import time

STEPS = 300
SIZE = 256 << 20
PAGE = 4096


def measure(directory, layout):
    fd, path = tempfile.mkstemp(dir=directory, prefix="holes-")
    try:
        if layout == "hole":
            os.ftruncate(fd, SIZE)
        elif layout == "fallocate":
            os.posix_fallocate(fd, 0, SIZE)
        else:
            zeros = bytes(1 << 20)
            for mib in range(SIZE >> 20):
                os.pwrite(fd, zeros, mib << 20)
        os.fsync(fd)
        page, value = os.urandom(PAGE), os.urandom(32 << 10)
        rng = random.Random(7)
        frontier = 100 << 20
        times = []
        for _ in range(STEPS):
            started = time.perf_counter()
            for _ in range(10):
                os.pwrite(fd, page, frontier + rng.randrange(64) * PAGE)
            os.pwrite(fd, value, frontier + 64 * PAGE)
            os.pwrite(fd, page[:320], 0)
            os.fdatasync(fd)
            times.append(time.perf_counter() - started)
            frontier += 10 * PAGE
        times.sort()
        return statistics.median(times), times[int(len(times) * 0.99)]
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    print(f"{STEPS} commits of 11 writes + fdatasync each, in {directory}")
    for layout in ("hole", "fallocate", "written before"):
        median, p99 = measure(directory, layout)
        print(f"{layout:>15}: median {median * 1e6:7.0f} µs   p99 {p99 * 1e6:7.0f} µs")


if __name__ == "__main__":
    main()
