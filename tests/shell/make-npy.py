#!/usr/bin/env python3
"""Writes the .npy files the shell transcripts read (good and malformed) into
OUTDIR, without numpy: the format is small enough to spell out by hand."""
import struct
import sys
import os


def header(d, version=1):
    h = d.encode("latin1")
    pre = 10 if version == 1 else 12
    pad = (-(pre + len(h) + 1)) % 64
    h = h + b" " * pad + b"\n"
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(h)) + h


def f4(vals):
    return b"".join(struct.pack("<f", v) for v in vals)


def f8(vals):
    return b"".join(struct.pack("<d", v) for v in vals)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    ramp = [((i % 7) - 3) / 4.0 for i in range(64)]
    files = {
        "zeros64.npy": header("{'descr': '<f4', 'fortran_order': False, 'shape': (64,), }") + f4([0.0] * 64),
        "ramp64.npy": header("{'descr': '<f4', 'fortran_order': False, 'shape': (64,), }") + f4(ramp),
        "ramp64-row.npy": header("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 64), }") + f4(ramp),
        "ramp64-f8-v2.npy": header("{'shape': (64,), 'fortran_order': False, 'descr': '<f8'}", 2) + f8(ramp),
        "ramp32.npy": header("{'descr': '<f4', 'fortran_order': False, 'shape': (32,), }") + f4(ramp[:32]),
        "bad-magic.npy": b"\x93NUMPX\x01\x00" + header("{'descr': '<f4', 'fortran_order': False, 'shape': (64,), }")[8:] + f4(ramp),
        "bad-version.npy": b"\x93NUMPY\x04\x00" + header("{'descr': '<f4', 'fortran_order': False, 'shape': (64,), }")[8:] + f4(ramp),
        "bad-header.npy": header("{'descr': '<f4', 'fortran_order': False, 'shape': (64,) ") + f4(ramp),
        "bad-key.npy": header("{'descr': '<f4', 'fortran_order': False, 'shape': (64,), 'extra': 1}") + f4(ramp),
        "int32.npy": header("{'descr': '<i4', 'fortran_order': False, 'shape': (64,), }") + b"\0" * 256,
        "big-endian.npy": header("{'descr': '>f4', 'fortran_order': False, 'shape': (64,), }") + b"\0" * 256,
        "fortran.npy": header("{'descr': '<f4', 'fortran_order': True, 'shape': (64,), }") + f4(ramp),
        "matrix.npy": header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 32), }") + f4(ramp),
        "truncated.npy": header("{'descr': '<f4', 'fortran_order': False, 'shape': (64,), }") + f4(ramp)[:100],
        "trailing.npy": header("{'descr': '<f4', 'fortran_order': False, 'shape': (64,), }") + f4(ramp) + b"\0\0\0\0",
        "empty.npy": b"",
    }
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
