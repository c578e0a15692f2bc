#!/usr/bin/env python3
"""onnxruntime's outputs for FedHE's ONNX export, as a test fixture.

    python3 -m venv /tmp/onnxvenv && /tmp/onnxvenv/bin/pip install -r scripts/requirements-onnx.txt
    cargo build --release
    /tmp/onnxvenv/bin/python scripts/onnx_reference.py [--retrain]

For every case below: exports the committed model file
tests/fixtures/onnx/<case>.json with the built `fedhe export`, checks the
ONNX model with onnx's checker, runs it with onnxruntime on the raw CSV (one
input per column: numbers as float64 with NaN for a missing cell, categories
as their text) and writes tests/fixtures/onnx_reference.json: per case the
SHA-256 of the ONNX bytes and onnxruntime's outputs. tests/onnx.rs exports
the same model files with FedHE's code, checks the bytes have that SHA-256,
and compares these outputs with `fedhe predict`'s.

--retrain first makes the model files again with `fedhe train` (fixed seeds,
bundled sample data); the fixture is then for the new models. A model file
that is not there yet is trained too. Two more models are derived:
penguins_variant_mlp from penguins_species_mlp (see VARIANT) for the
preprocessing choices only a plan makes, penguins_variant_gbdt from
penguins_species_gbdt (VARIANT_GBDT) for an "(other)" category in trees.

Environment: FEDHE (default target/release/fedhe).
"""
import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

# name, training CSV, scored CSV, `fedhe train` arguments. Every task, both
# model kinds; penguins has categories (island, sex, year) and missing cells.
CASES = [
    ("wdbc_linear", "sample_data/train.csv", "sample_data/test.csv",
     ["--label", "diagnosis", "--epochs", "30"]),
    ("wdbc_mlp", "sample_data/train.csv", "sample_data/test.csv",
     ["--label", "diagnosis", "--model", "mlp", "--hidden", "16", "--epochs", "30"]),
    ("penguins_sex_linear", "sample_data/penguins.csv", "sample_data/penguins.csv",
     ["--label", "sex", "--epochs", "40"]),
    ("wine_linear", "sample_data/wine.csv", "sample_data/wine.csv",
     ["--label", "cultivar", "--epochs", "40"]),
    ("penguins_species_mlp", "sample_data/penguins.csv", "sample_data/penguins.csv",
     ["--label", "species", "--model", "mlp", "--hidden", "16,8", "--epochs", "40"]),
    ("diabetes_linear", "sample_data/diabetes.csv", "sample_data/diabetes.csv",
     ["--label", "progression", "--epochs", "40"]),
    ("diabetes_mlp", "sample_data/diabetes.csv", "sample_data/diabetes.csv",
     ["--label", "progression", "--model", "mlp", "--hidden", "16", "--epochs", "40"]),
    ("penguins_mass_mlp", "sample_data/penguins.csv", "sample_data/penguins.csv",
     ["--label", "body_mass_g", "--model", "mlp", "--hidden", "16", "--epochs", "40"]),
]

# Gradient-boosted trees, every task: numeric thresholds, category sets,
# missing cells taking the default direction (after the others, so their
# fixture entries keep their places).
GBDT_CASES = [
    ("wdbc_gbdt", "sample_data/train.csv", "sample_data/test.csv",
     ["--label", "diagnosis", "--model", "gbdt", "--trees", "20", "--depth", "4"]),
    ("penguins_species_gbdt", "sample_data/penguins.csv", "sample_data/penguins.csv",
     ["--label", "species", "--model", "gbdt", "--trees", "10", "--depth", "3"]),
    ("penguins_mass_gbdt", "sample_data/penguins.csv", "sample_data/penguins.csv",
     ["--label", "body_mass_g", "--model", "gbdt", "--trees", "20", "--depth", "4"]),
]


# A variant of penguins_species_mlp with the preprocessing choices a plan
# can make and `fedhe train` does not: a missing indicator after every
# number, `sex` missing as its most frequent category, an "(other)" slot for
# islands outside the list; scored on penguins.csv with some islands renamed.
VARIANT = ("penguins_variant_mlp", "penguins_species_mlp", "tests/fixtures/onnx/penguins_variant.csv")
# The same for trees: penguins_species_gbdt with an "(other)" code for
# islands outside the list (the trees' fills are not used), on the same CSV.
VARIANT_GBDT = ("penguins_variant_gbdt", "penguins_species_gbdt")


def output_names(columns):
    """FedHE's Encoder::output_names."""
    out = []
    for c in columns:
        if c["kind"] == "numeric":
            out.append(c["name"])
            if c.get("indicator"):
                out.append(f"{c['name']}=(missing)")
        else:
            out += [f"{c['name']}={k}" for k in c["categories"]]
            if c.get("other"):
                out.append(f"{c['name']}=(other)")
            if c["missing"] == "category":
                out.append(f"{c['name']}=(missing)")
    return out


def make_variant(base_rel, variant_rel, csv_rel):
    """Writes the variant model (from the base model file) and its CSV."""
    with open(os.path.join(ROOT, base_rel)) as f:
        m = json.load(f)
    cols = m["preprocessing"]["columns"]
    old = output_names(cols)
    for c in cols:
        if c["kind"] == "numeric":
            c["indicator"] = True
        elif c["name"] == "island":
            c["other"] = True
        elif c["name"] == "sex":
            c["missing"], c["fill"] = "most_frequent", 1
    new = output_names(cols)
    hidden = m["architecture"]["hidden"][0]
    d_old, params = len(old), m["params"]
    w0 = [params[i * hidden:(i + 1) * hidden] for i in range(d_old)]
    rest = params[d_old * hidden:]
    mean, std = m["standardization"]["mean"], m["standardization"]["std"]
    rows, means, stds = [], [], []
    for k, name in enumerate(new):
        if name in old:
            i = old.index(name)
            rows.append(w0[i]); means.append(mean[i]); stds.append(std[i])
        else:  # a new column: fixed, made-up weights and scaling
            rows.append([0.05 * ((k * 7 + j * 3) % 11 - 5) for j in range(hidden)])
            means.append(0.02); stds.append(0.15)
    m["feature_names"] = new
    m["standardization"] = {"mean": means, "std": stds}
    m["params"] = [w for r in rows for w in r] + rest
    with open(os.path.join(ROOT, variant_rel), "w") as f:
        json.dump(m, f, indent=2)
        f.write("\n")
    with open(os.path.join(ROOT, "sample_data/penguins.csv"), newline="") as f:
        table = list(csv.reader(f))
    j = table[0].index("island")
    for i, r in enumerate(table[1:]):
        if i % 9 == 4:
            r[j] = "Anvers"
    with open(os.path.join(ROOT, csv_rel), "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(table)


def make_variant_gbdt(base_rel, variant_rel):
    """Writes the trees' variant model from the base model file."""
    with open(os.path.join(ROOT, base_rel)) as f:
        m = json.load(f)
    for c in m["preprocessing"]["columns"]:
        if c["name"] == "island":
            c["other"] = True
    with open(os.path.join(ROOT, variant_rel), "w") as f:
        json.dump(m, f, indent=2)
        f.write("\n")


def run(fedhe, args):
    r = subprocess.run([fedhe, *args], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"fedhe {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


def feeds(session, model_file, csv_path):
    """The raw columns of `csv_path` as the graph's inputs."""
    with open(model_file) as f:
        tokens = set(json.load(f).get("preprocessing", {}).get("missing_tokens", []))
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    out = {}
    for inp in session.get_inputs():
        j = header.index(inp.name)
        cells = [r[j].strip() for r in body]
        if inp.type == "tensor(string)":
            out[inp.name] = np.array(cells, dtype=object).reshape(-1, 1)
        else:
            values = [np.nan if c == "" or c in tokens else float(c) for c in cells]
            out[inp.name] = np.array(values, dtype=np.float64).reshape(-1, 1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--retrain", action="store_true",
                    help="make the model files again with fedhe train first")
    a = ap.parse_args()
    fedhe = os.environ.get("FEDHE", os.path.join(ROOT, "target", "release", "fedhe"))
    os.makedirs(os.path.join(FIXTURES, "onnx"), exist_ok=True)
    cases = []
    variant, base, variant_csv = VARIANT
    todo = [(n, d, ["--data", t, *args, "--seed", "7"]) for n, t, d, args in CASES]
    todo.append((variant, variant_csv, ["derived from", f"tests/fixtures/onnx/{base}.json"]))
    todo += [(n, d, ["--data", t, *args, "--seed", "7"]) for n, t, d, args in GBDT_CASES]
    variant_gbdt, base_gbdt = VARIANT_GBDT
    todo.append((variant_gbdt, variant_csv,
                 ["derived from", f"tests/fixtures/onnx/{base_gbdt}.json"]))
    with tempfile.TemporaryDirectory() as work:
        for name, data, train in todo:
            model_rel = f"tests/fixtures/onnx/{name}.json"
            missing = not os.path.exists(os.path.join(ROOT, model_rel))
            if (a.retrain or missing) and train[0] == "--data":
                run(fedhe, ["train", *train, "--out", model_rel])
            if name == variant:
                make_variant(f"tests/fixtures/onnx/{base}.json", model_rel, variant_csv)
            if name == variant_gbdt:
                make_variant_gbdt(f"tests/fixtures/onnx/{base_gbdt}.json", model_rel)
            onnx_path = os.path.join(work, f"{name}.onnx")
            run(fedhe, ["export", "--model", model_rel, "--onnx", onnx_path])
            onnx.checker.check_model(onnx.load(onnx_path), full_check=True)
            with open(onnx_path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
            names = [o.name for o in session.get_outputs()]
            results = session.run(names, feeds(session, os.path.join(ROOT, model_rel),
                                               os.path.join(ROOT, data)))
            outputs = {}
            for n, v in zip(names, results):
                outputs[n] = [str(x) for x in v] if v.dtype == object else v.tolist()
            cases.append({"name": name, "model": model_rel, "data": data,
                          "train": train,
                          "onnx_sha256": digest, "outputs": outputs})
            print(f"{name}: {len(results[0])} rows, outputs {', '.join(names)}")
    fixture = {
        "generated_by": "scripts/onnx_reference.py",
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "cases": cases,
    }
    path = os.path.join(FIXTURES, "onnx_reference.json")
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
