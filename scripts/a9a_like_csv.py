#!/usr/bin/env python3
"""An a9a-sized table (32,561 rows x 123 0/1 columns, densities 2-22 %, the
label from ten of them) dealt into N site files, like `fedhe bench gbdt`'s
synthetic table (the same shape and law, not the same random draws).
Usage: a9a_like_csv.py OUT_DIR [SITES]"""
import os
import random
import sys

out, sites = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
rows, features = 32561, 123
rng = random.Random(42)
density = [0.02 + 0.2 * rng.random() for _ in range(features)]
weight = [rng.random() * 4 - 2 for _ in range(10)]
os.makedirs(out, exist_ok=True)
files = [open(os.path.join(out, f"site_{k + 1}.csv"), "w") for k in range(sites)]
header = ",".join(f"f{j + 1}" for j in range(features)) + ",label\n"
for f in files:
    f.write(header)
for i in range(rows):
    z = rng.random() - 0.5
    cells = []
    for j in range(features):
        on = rng.random() < density[j]
        cells.append("1" if on else "0")
        if on and j < 10:
            z += weight[j]
    files[i % sites].write(",".join(cells) + ("," + ("1" if z > 0 else "0")) + "\n")
for f in files:
    f.close()
