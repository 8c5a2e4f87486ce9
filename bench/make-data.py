#!/usr/bin/env python3
"""Makes a realistic backup source: a database-dump-like text file (about 4:1 with gzip),
incompressible binary, and many small files. Deterministic for a given size and seed.

usage: bench/make-data.py DIR [--size 1GiB] [--files N] [--single-file]
"""
import argparse
import os
import random


def parse_size(text):
    units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "": 1}
    t = text.strip().lower()
    num = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    return int(float(num) * units[t[len(num):]])


# Dump text past this many bytes repeats what was generated, from the start: generating
# it costs about 1 s of CPU per 12 MiB, and gzip's 32 KiB window cannot see a repetition
# this far back, so it compresses as fresh text would (restic's deduplication would see it:
# compare restic on data sets up to 1 GiB only).
DUMP_UNIQUE = 512 << 20


def dump_text(path, size, rng):
    words = [w.encode() for w in (
        "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega orders customers "
        "invoices shipped pending paid refunded Berlin Paris Lisbon Oslo Madrid Rome Vienna"
    ).split()]
    with open(path, "wb") as f:
        written, row = 0, 0
        while written < min(size, DUMP_UNIQUE):
            lines = []
            for _ in range(2000):
                row += 1
                line = b"INSERT INTO orders VALUES (%d, '%s', '%s', %d.%02d, '2026-%02d-%02d %02d:%02d:%02d', '%s');\n" % (
                    row, rng.choice(words), rng.choice(words), rng.randrange(100000), rng.randrange(100),
                    rng.randrange(1, 13), rng.randrange(1, 29), rng.randrange(24), rng.randrange(60),
                    rng.randrange(60), b"%08x" % rng.getrandbits(32))
                lines.append(line)
            chunk = b"".join(lines)[: min(size, DUMP_UNIQUE) - written]
            f.write(chunk)
            written += len(chunk)
    if written >= size:
        return
    with open(path, "rb") as src, open(path, "ab") as f:
        while written < size:
            src.seek(0)
            left = min(size - written, DUMP_UNIQUE)
            while left > 0:
                chunk = src.read(min(left, 1 << 20))
                f.write(chunk)
                left -= len(chunk)
                written += len(chunk)


def random_file(path, size, rng):
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n))
            left -= n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--size", default="1GiB")
    p.add_argument("--files", type=int, default=None, help="number of small files (default: 100 per MiB of --size / 10)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--single-file", action="store_true", help="one dump-like file of --size instead")
    a = p.parse_args()
    total = parse_size(a.size)
    rng = random.Random(a.seed)
    os.makedirs(a.dir, exist_ok=True)
    if a.single_file:
        dump_text(os.path.join(a.dir, "dump.sql"), total, rng)
        return
    # half dump text, a quarter random binary, a quarter small files
    dump_text(os.path.join(a.dir, "dump.sql"), total // 2, rng)
    random_file(os.path.join(a.dir, "blobs.bin"), total // 4, rng)
    files = a.files if a.files is not None else max(1, total // (10 << 10) // 100 * 10)
    small_total = total - total // 2 - total // 4
    each = max(1, small_total // files)
    for i in range(files):
        d = os.path.join(a.dir, "small", "%03d" % (i % 1000))
        if i < 1000:
            os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "f%07d" % i)
        if i % 2:
            with open(path, "wb") as f:
                f.write(rng.randbytes(each))
        else:
            with open(path, "wb") as f:
                f.write((b"key=%d value=%s\n" % (i, b"x" * 40)) * max(1, each // 56))


if __name__ == "__main__":
    main()
