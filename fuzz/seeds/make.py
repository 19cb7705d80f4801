#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets (fuzz/seeds/TARGET/*) from the documented layouts:
WAL segments (crates/storage/src/wal/format.rs) and transport frames (crates/cluster/src/
transport/wire.rs, bincode 2 standard config behind codec format version 2). Rerun after a
layout change: python3 fuzz/seeds/make.py"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def frame(body):
    return struct.pack("<II", len(body), zlib.crc32(body)) + body


def wal_header(seq, prev_len):
    h = b"PERDWAL\0" + bytes([1, 0, 0, 0]) + struct.pack("<QQ", seq, prev_len)
    return h + struct.pack("<I", zlib.crc32(h))


def record(partition, kind, index, payload):
    return frame(struct.pack("<IBQ", partition, kind, index) + payload)


def varint(n):
    # bincode 2 varint: < 251 one byte, else 251 + u16, 252 + u32, 253 + u64
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return bytes([251]) + struct.pack("<H", n)
    if n < 1 << 32:
        return bytes([252]) + struct.pack("<I", n)
    return bytes([253]) + struct.pack("<Q", n)


def string(s):
    return varint(len(s)) + s


def message(variant, fields=b""):
    return frame(bytes([2]) + varint(variant) + fields)


def write(target, name, data):
    os.makedirs(os.path.join(HERE, target), exist_ok=True)
    with open(os.path.join(HERE, target, name), "wb") as f:
        f.write(data)


records = [
    record(0, 1, 7, bytes([2, 1, 0, 0]) + b"entries"),
    record(3, 4, 0, bytes([2, 1, 1, 1])),
    record(1, 5, 0, bytes([2, 1, 0, 6])),
    record(2, 3, 5, bytes([2])),
    record(1, 2, 9, b""),
]
write("wal_segment", "records", b"\0" + b"".join(records))
write("wal_segment", "segment", b"\1" + wal_header(1, 0) + b"".join(records))
damaged = bytearray(records[1])
damaged[12] ^= 0xFF
write("wal_segment", "damaged_then_intact", b"\0" + records[0] + bytes(damaged) + records[2])
write("wal_segment", "torn", b"\0" + records[0] + records[1][:9])
write("wal_segment", "zeroed_tail", b"\0" + records[0] + bytes(64))

nonce = bytes(range(32))
hello = message(0, varint(2) + string(b"perdure") + varint(2) + varint(16) + nonce)
challenge = message(1, varint(1) + nonce + nonce)
proof = message(2, nonce)
welcome = message(3)
refused = message(4, string(b"wrong cluster secret"))
request = message(5, varint(42) + varint(1) + string(b"raft request body"))
response = message(6, varint(42) + string(b"answer"))
ping, pong = message(8), message(9)
for chunk in (0, 1, 7):
    write("transport_frames", f"server_side_{chunk}", bytes([chunk]) + hello + proof + request + ping)
    write("transport_frames", f"client_side_{chunk}", bytes([chunk]) + challenge + welcome + response + pong)
write("transport_frames", "refused", b"\0" + refused)
write("transport_frames", "torn", b"\0" + hello + request[:-3])

# codec: first byte picks the type (see fuzz_targets/codec.rs); the rest is [version 2][bincode]
write("codec", "log_id", bytes([4, 2, 3, 1, 17]))
write("codec", "committed", bytes([6, 2, 1, 3, 1, 17]))
write("codec", "frame", bytes([11]) + frame(b"a framed body"))
write("codec", "data_dir_meta", bytes([9, 2, 16, 1, 252]) + struct.pack("<I", 1_700_000_000))
