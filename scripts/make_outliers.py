#!/usr/bin/env python3
"""A small synthetic diamonds-like regression table with a few extreme rows,
for FedHE's divergence reproduction (issue 20): plain SGD at lr 0.1 diverged
on the real diamonds table because of a handful of mistyped dimensions
(a `y` of 58.9 mm, a `z` of 31.8 mm, zeros). Standard library only, seeded:

    python3 scripts/make_outliers.py > tests/fixtures/outliers/diamonds_like.csv

Columns: carat, depth, table, x, y, z (mm), price (label). 3000 rows; price
is linear in carat and the dimensions plus noise; 6 rows carry outlying
dimensions as the real table does (their price is normal).
"""
import math
import random

rng = random.Random(20)
print("carat,depth,table,x,y,z,price")
rows = 3000
outliers = {37: ("y", 58.9), 211: ("z", 31.8), 402: ("y", 31.8), 555: ("z", 0.0),
            640: ("x", 0.0), 777: ("z", 43.0)}
for i in range(rows):
    carat = round(rng.uniform(0.2, 2.5), 2)
    depth = round(rng.gauss(61.7, 1.4), 1)
    table = round(rng.gauss(57.4, 2.2), 1)
    side = 6.45 * carat ** (1.0 / 3.0)
    x = round(side + rng.gauss(0, 0.05), 2)
    y = round(side + rng.gauss(0, 0.05), 2)
    z = round(side * depth / 100.0 + rng.gauss(0, 0.03), 2)
    price = 7800 * carat - 2500 + 900 * (x - side) - 35 * (depth - 61.7) \
        - 20 * (table - 57.4) + rng.gauss(0, 700)
    if i in outliers:
        col, v = outliers[i]
        if col == "x":
            x = v
        elif col == "y":
            y = v
        else:
            z = v
    print(f"{carat},{depth},{table},{x},{y},{z},{round(price)}")
