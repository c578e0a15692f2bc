#!/usr/bin/env python3
"""Centralised scikit-learn baselines for FedHE: fit on a train CSV, score a
test CSV.

    /tmp/skvenv/bin/python scripts/sklearn_reference.py \\
        --train sample_data/train.csv --test sample_data/test.csv \\
        --label diagnosis --task binary [--seed 42] [--json]

Features are every column except --label (all must be numeric). Models, each
a Pipeline(StandardScaler, model) fitted on the train file:

- classification (binary | multiclass):
    LogisticRegression(max_iter=10000)            (L2, C=1)
    LogisticRegression, unregularized             (C=inf; the same as
                                                   penalty=None, which
                                                   scikit-learn >= 1.8 deprecates)
    MLPClassifier(hidden_layer_sizes=(32,), max_iter=2000, random_state=seed)
  metrics: accuracy; multiclass also macro-F1.
- regression:
    LinearRegression()
    MLPRegressor(hidden_layer_sizes=(32,), max_iter=2000, random_state=seed)
  metrics: R^2, RMSE.

Output: a markdown table, or with --json the same rows as JSON.
Environment: scripts/requirements-reference.txt.
"""
import argparse
import json
import sys
import warnings

import numpy as np
import pandas as pd
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import OneHotEncoder, StandardScaler


MISSING = ["", "NA", "NaN", "null", "?"]


def load(path, label, categorical):
    # FedHE's default missing tokens; categorical columns read as text.
    df = pd.read_csv(path, na_values=MISSING, keep_default_na=False,
                     dtype={c: str for c in categorical})
    if label not in df.columns:
        sys.exit(f"{path}: no column {label!r} (columns: {', '.join(df.columns)})")
    df = df[df[label].notna()]  # rows without a label are skipped, as FedHE does
    X = df.drop(columns=[label])
    bad = [c for c in X.columns if c not in categorical and not pd.api.types.is_numeric_dtype(X[c])]
    if bad:
        sys.exit(f"{path}: non-numeric feature column(s) not in --categorical: {', '.join(bad)}")
    return X, df[label]


def preprocessing(columns, categorical):
    """FedHE's default preprocessing: numbers imputed with the mean, a
    missing category as its own one-hot column, then every column
    standardized."""
    numeric = [c for c in columns if c not in categorical]
    cat = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="(missing)"),
        OneHotEncoder(handle_unknown="error", sparse_output=False),
    )
    encode = ColumnTransformer([
        ("numeric", SimpleImputer(strategy="mean"), numeric),
        ("categorical", cat, [c for c in columns if c in categorical]),
    ])
    return [encode, StandardScaler()]


def models(task, seed):
    mlp = dict(hidden_layer_sizes=(32,), max_iter=2000, random_state=seed)
    if task == "regression":
        return [
            ("LinearRegression", LinearRegression()),
            ("MLPRegressor(32)", MLPRegressor(**mlp)),
        ]
    return [
        ("LogisticRegression (L2, C=1)", LogisticRegression(max_iter=10000)),
        ("LogisticRegression (unregularized)", LogisticRegression(C=np.inf, max_iter=10000)),
        ("MLPClassifier(32)", MLPClassifier(**mlp)),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--task", required=True, choices=["binary", "multiclass", "regression"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--categorical", default="",
                    help="comma-separated categorical columns (one-hot encoded)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    a = ap.parse_args()

    categorical = [c for c in a.categorical.split(",") if c]
    Xtr, ytr = load(a.train, a.label, categorical)
    Xte, yte = load(a.test, a.label, categorical)
    if list(Xtr.columns) != list(Xte.columns):
        sys.exit("train and test have different feature columns")
    if a.task != "regression":
        n = ytr.nunique()
        if a.task == "binary" and n != 2:
            sys.exit(f"--task binary but the train labels have {n} distinct values")
        if a.task == "multiclass" and n < 3:
            sys.exit(f"--task multiclass but the train labels have {n} distinct values")
        unseen = set(yte.unique()) - set(ytr.unique())
        if unseen:
            sys.exit(f"test labels not in train: {sorted(map(str, unseen))}")

    rows, notes = [], []
    for name, est in models(a.task, a.seed):
        pipe = make_pipeline(*preprocessing(list(Xtr.columns), categorical), est)
        if a.task == "regression":
            # FedHE standardizes a regression target too (and maps back).
            pipe = TransformedTargetRegressor(regressor=pipe, transformer=StandardScaler())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            pipe.fit(Xtr, ytr)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            notes.append(f"{name}: did not converge (ConvergenceWarning)")
        pred = pipe.predict(Xte)
        row = {"model": name}
        if a.task == "regression":
            row["r2"] = float(r2_score(yte, pred))
            row["rmse"] = float(np.sqrt(mean_squared_error(yte, pred)))
        else:
            row["accuracy"] = float(accuracy_score(yte, pred))
            if a.task == "multiclass":
                row["macro_f1"] = float(f1_score(yte, pred, average="macro"))
        rows.append(row)

    meta = {
        "train": a.train, "test": a.test, "label": a.label, "task": a.task, "seed": a.seed,
        "categorical": categorical,
        "n_train": len(Xtr), "n_test": len(Xte), "n_features": Xtr.shape[1],
        "sklearn": sklearn.__version__,
    }
    if a.json:
        print(json.dumps({**meta, "results": rows, "notes": notes}, indent=2))
        return
    keys = [k for k in rows[0] if k != "model"]
    head = {"accuracy": "accuracy", "macro_f1": "macro-F1", "r2": "R²", "rmse": "RMSE"}
    print(f"{a.task}, label `{a.label}`: {meta['n_train']} train / {meta['n_test']} test rows, "
          f"{meta['n_features']} features, seed {a.seed}, scikit-learn {sklearn.__version__}\n")
    print("| model | " + " | ".join(head[k] for k in keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for r in rows:
        print(f"| {r['model']} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + " |")
    for n in notes:
        print(f"\nnote: {n}")


if __name__ == "__main__":
    main()
