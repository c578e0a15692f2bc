#!/usr/bin/env python3
"""Draws icons/fedhe.png (256x256 RGBA) with the standard library only.

A rounded dark-teal square; three client nodes joined to a central
aggregator node; a padlock on the aggregator (encrypted updates).
Run from the repository root: python3 icons/make_icon.py
"""
import math
import struct
import zlib

S = 256
SS = 4  # supersampling per axis


def inside_rounded(x, y, r, pad):
    lo, hi = pad, S - pad
    if x < lo or x > hi or y < lo or y > hi:
        return False
    cx = min(max(x, lo + r), hi - r)
    cy = min(max(y, lo + r), hi - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def seg_dist(px, py, ax, ay, bx, by):
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    qx, qy = ax + t * dx, ay + t * dy
    return math.hypot(px - qx, py - qy)


CENTER = (128.0, 136.0)
NODES = [(128.0 + 78 * math.cos(a), 136.0 + 78 * math.sin(a))
         for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
BG = (17, 94, 89)
BG2 = (13, 148, 136)
LINE = (204, 251, 241)
NODE = (250, 204, 21)
HUB = (255, 255, 255)
LOCK = (17, 94, 89)


def color(x, y):
    if not inside_rounded(x, y, 44, 8):
        return None
    t = y / S
    c = tuple(int(BG2[i] * (1 - t) + BG[i] * t) for i in range(3))
    for (nx, ny) in NODES:
        if seg_dist(x, y, CENTER[0], CENTER[1], nx, ny) < 6:
            c = LINE
    for (nx, ny) in NODES:
        if math.hypot(x - nx, y - ny) < 24:
            c = NODE
    cx, cy = CENTER
    if math.hypot(x - cx, y - cy) < 40:
        c = HUB
        # padlock: shackle ring and body
        r = math.hypot(x - cx, y - (cy - 6))
        if 11 <= r <= 17 and y <= cy - 6:
            c = LOCK
        if cx - 19 <= x <= cx + 19 and cy - 6 <= y <= cy + 22:
            c = LOCK
            if math.hypot(x - cx, y - (cy + 5)) < 5 or (abs(x - cx) < 2.5 and cy + 5 <= y <= cy + 15):
                c = HUB
    return c


def main():
    rows = []
    for y in range(S):
        row = bytearray([0])
        for x in range(S):
            acc = [0, 0, 0, 0]
            for sy in range(SS):
                for sx in range(SS):
                    c = color(x + (sx + 0.5) / SS, y + (sy + 0.5) / SS)
                    if c is not None:
                        acc[0] += c[0]
                        acc[1] += c[1]
                        acc[2] += c[2]
                        acc[3] += 1
            n = acc[3]
            if n:
                row += bytes([acc[0] // n, acc[1] // n, acc[2] // n, 255 * n // (SS * SS)])
            else:
                row += bytes([0, 0, 0, 0])
        rows.append(bytes(row))
    raw = b"".join(rows)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", S, S, 8, 6, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9))
    png += chunk(b"IEND", b"")
    with open("icons/fedhe.png", "wb") as f:
        f.write(png)


if __name__ == "__main__":
    main()
