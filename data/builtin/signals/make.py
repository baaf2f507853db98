#!/usr/bin/env python3
"""Writes the built-in `signals` data set: synthetic 1-D waveforms of 64 samples, 4 classes.

Standard library only, deterministic (random.Random(2026)): `python3 make.py` in this folder
rewrites the four IDX files byte for byte, and the CSV copies in `tests/fixtures/csv/signals/`. Each sample is one of sine, square, triangle or
sawtooth, with 1 to 4 cycles over the window, a random phase, amplitude 0.5..1.5, offset -0.2..0.2
and Gaussian noise of standard deviation 0.35. 800 train / 200 test, classes balanced.
"""
import math
import os
import random
import struct

LENGTH = 64
CLASSES = ["sine", "square", "triangle", "sawtooth"]


def wave(kind, t):
    f = t - math.floor(t)  # position in the cycle, 0..1
    if kind == 0:
        return math.sin(2 * math.pi * f)
    if kind == 1:
        return 1.0 if f < 0.5 else -1.0
    if kind == 2:
        return 4 * f - 1 if f < 0.5 else 3 - 4 * f
    return 2 * f - 1


def sample(rng, kind):
    cycles = rng.uniform(1.0, 4.0)
    phase = rng.random()
    amp = rng.uniform(0.5, 1.5)
    offset = rng.uniform(-0.2, 0.2)
    return [
        offset + amp * wave(kind, phase + cycles * i / LENGTH) + rng.gauss(0.0, 0.35)
        for i in range(LENGTH)
    ]


def write(prefix, rows, labels):
    with open(f"{prefix}-features-idx2-float", "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x0D, 2))
        f.write(struct.pack(">II", len(rows), LENGTH))
        for r in rows:
            f.write(struct.pack(f">{LENGTH}f", *r))
    with open(f"{prefix}-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, 1))
        f.write(struct.pack(">I", len(labels)))
        f.write(bytes(labels))


def write_csv(path, rows, labels):
    """The CSV copy the tests compare with the IDX files (values rounded to float32 first)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(",".join([f"t{i}" for i in range(LENGTH)] + ["label"]) + "\n")
        for r, y in zip(rows, labels):
            r32 = struct.unpack(f"{LENGTH}f", struct.pack(f"{LENGTH}f", *r))
            f.write(",".join([repr(v) for v in r32] + [str(y)]) + "\n")


def main():
    rng = random.Random(2026)
    csv_dir = os.path.join("..", "..", "..", "tests", "fixtures", "csv", "signals")
    for prefix, csv, per_class in (("train", "train.csv", 200), ("t10k", "test.csv", 50)):
        labels = [k for k in range(len(CLASSES)) for _ in range(per_class)]
        rng.shuffle(labels)
        rows = [sample(rng, k) for k in labels]
        write(prefix, rows, labels)
        write_csv(os.path.join(csv_dir, csv), rows, labels)


if __name__ == "__main__":
    main()
