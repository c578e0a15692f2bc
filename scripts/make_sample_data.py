#!/usr/bin/env python3
"""Write sample_data/wine.csv, digits.csv and diabetes.csv from the data sets
bundled with scikit-learn, and sample_data/penguins.csv from the one bundled
with the palmerpenguins package (no download), reproducibly.

    python3 -m venv /tmp/skvenv
    /tmp/skvenv/bin/pip install -r scripts/requirements-reference.txt
    /tmp/skvenv/bin/python scripts/make_sample_data.py

- wine.csv: load_wine(), 178 rows, 13 numeric features, label column
  `cultivar` (last) = "cultivar_1" | "cultivar_2" | "cultivar_3" for
  targets 0 | 1 | 2.
- digits.csv: load_digits(), 1797 rows, 64 pixel intensities 0..16 written
  as integers (`pixel_0_0` .. `pixel_7_7`), label column `digit` (last),
  0..9.
- diabetes.csv: load_diabetes(scaled=False), 442 rows, 10 features
  (age, sex, bmi, bp, s1..s6; sex is 1/2), target column `progression` (last).
- penguins.csv: the palmerpenguins package's penguins.csv copied byte for
  byte: 344 rows, label `species` (3 classes), two text columns (`island`,
  `sex`), `year`, and missing cells written `NA`.

Column names are sklearn's feature names with every character outside
[A-Za-z0-9_] replaced by "_". Floats are written in Python's shortest
round-trip (repr) form; no index column; "\\n" line endings.
"""
import argparse
import re
import shutil
from pathlib import Path

import pandas as pd
from sklearn.datasets import load_diabetes, load_digits, load_wine

OUT_DEFAULT = Path(__file__).resolve().parent.parent / "sample_data"


def clean(name):
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def frame(bunch, label, labels):
    df = pd.DataFrame(bunch.data, columns=[clean(n) for n in bunch.feature_names])
    if len(set(df.columns)) != df.shape[1]:
        raise SystemExit("duplicate column names after cleaning")
    df[label] = labels
    return df


def write(df, path, label):
    df.to_csv(path, index=False, float_format=None, lineterminator="\n")
    kind = (
        f"classes {dict(sorted(df[label].value_counts().items()))}"
        if df[label].dtype == object
        else f"{label} in [{df[label].min():g}, {df[label].max():g}]"
    )
    print(f"{path}: {len(df)} rows, {df.shape[1] - 1} features, label `{label}` (last); {kind}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT_DEFAULT, help="output folder (default: sample_data/)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    wine = load_wine()
    names = [f"cultivar_{int(t) + 1}" for t in wine.target]
    write(frame(wine, "cultivar", pd.Series(names, dtype=object)), args.out / "wine.csv", "cultivar")

    digits = load_digits()
    df = frame(digits, "digit", digits.target)
    df = df.astype(int)
    write(df, args.out / "digits.csv", "digit")

    diabetes = load_diabetes(scaled=False)
    write(frame(diabetes, "progression", diabetes.target), args.out / "diabetes.csv", "progression")

    # The file as the package ships it: its NA cells are the point.
    import palmerpenguins

    src = Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"
    dst = args.out / "penguins.csv"
    shutil.copyfile(src, dst)
    df = pd.read_csv(dst)
    print(f"{dst}: {len(df)} rows, {int(df.isna().sum().sum())} missing cells, label `species`")


if __name__ == "__main__":
    main()
