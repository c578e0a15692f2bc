#!/usr/bin/env python3
"""Centralized XGBoost and LightGBM figures for FedHE's gradient-boosted
trees: fit on a train CSV, score a test CSV, with the settings `fedhe train
--model gbdt` uses by default (XGBoost's own):

    /work/venv-g1/bin/python scripts/xgboost_reference.py \\
        --train wdbc/train.csv --test wdbc/test.csv --label diagnosis \\
        --task binary [--categorical a,b] [--json]

tree_method "hist", max_bin 256, 100 boosting rounds, max_depth 6, eta 0.1,
lambda 1, min_child_weight 1, gamma 0, subsample 1, colsample_bytree 1.
Categorical columns are pandas categories (enable_categorical: XGBoost's
partition splits, as FedHE's one bin per category). The base margin is 0
(base_score 0.5 for binary, 0 on the standardized regression target), as in
FedHE. Metrics: accuracy and AUC (binary), accuracy and macro-F1
(multi-class), R² and RMSE (regression); for tables without categorical
columns also the same with the exact greedy method (`exact_*`).

LightGBM (`lgbm_*`) with the same settings as far as it has them: 100
trees, max_depth 6 and num_leaves 63 (a full depth-6 tree has 64 leaves;
LightGBM grows leaf-wise, so at most 63 splits), learning_rate 0.1,
lambda_l2 1, min_sum_hessian_in_leaf 1, max_bin 256, min_data_in_leaf 1,
min_data_in_bin 1, no bagging or feature sampling, boost_from_average off
(a base margin of 0, as FedHE), deterministic, one thread. Categorical
columns are pandas categories (LightGBM's own categorical splits).
"""
import argparse
import json
import sys

import numpy as np
import pandas as pd
import lightgbm as lgb
import xgboost as xgb
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score, roc_auc_score

MISSING = ["", "NA", "NaN", "null", "?"]


def load(path, label, categorical):
    df = pd.read_csv(path, na_values=MISSING, keep_default_na=False,
                     dtype={c: str for c in categorical})
    if label not in df.columns:
        sys.exit(f"{path}: no column {label!r}")
    df = df[df[label].notna()]
    return df.drop(columns=[label]), df[label]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--task", required=True, choices=["binary", "multiclass", "regression"])
    ap.add_argument("--categorical", default="")
    ap.add_argument("--name", default="")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    categorical = [c for c in a.categorical.split(",") if c]
    Xtr, ytr = load(a.train, a.label, categorical)
    Xte, yte = load(a.test, a.label, categorical)
    for c in categorical:
        cats = sorted(set(Xtr[c].dropna()))
        Xtr[c] = pd.Categorical(Xtr[c], categories=cats)
        Xte[c] = pd.Categorical(Xte[c], categories=cats)
    params = dict(tree_method="hist", max_bin=256, n_estimators=100, max_depth=6,
                  learning_rate=0.1, reg_lambda=1.0, min_child_weight=1.0, gamma=0.0,
                  subsample=1.0, colsample_bytree=1.0, enable_categorical=bool(categorical),
                  n_jobs=1, random_state=0)
    row = {"name": a.name or a.train, "task": a.task, "n_train": len(Xtr), "n_test": len(Xte),
           "xgboost": xgb.__version__, "lightgbm": lgb.__version__}
    row.update(figures(a.task, params, Xtr, ytr, Xte, yte))
    row.update({f"lgbm_{k}": v for k, v in lgbm_figures(a.task, Xtr, ytr, Xte, yte).items()})
    if not categorical:
        # The exact greedy method (no bins) on the same settings: how much
        # the figure moves with the binning alone on this split.
        exact = dict(params, tree_method="exact")
        del exact["max_bin"]
        row.update({f"exact_{k}": v for k, v in figures(a.task, exact, Xtr, ytr, Xte, yte).items()})
    if a.json:
        print(json.dumps(row))
    else:
        print(" ".join(f"{k}={v}" for k, v in row.items()))


LGBM = dict(n_estimators=100, max_depth=6, num_leaves=63, learning_rate=0.1, reg_lambda=1.0,
            reg_alpha=0.0, min_child_weight=1.0, min_child_samples=1, min_split_gain=0.0,
            max_bin=256, min_data_in_bin=1, subsample=1.0, subsample_freq=0,
            colsample_bytree=1.0, boost_from_average=False, deterministic=True,
            force_row_wise=True, n_jobs=1, random_state=0, verbose=-1)


def lgbm_figures(task, Xtr, ytr, Xte, yte):
    row = {}
    if task == "regression":
        mu, sd = float(ytr.mean()), float(ytr.std(ddof=0))
        m = lgb.LGBMRegressor(objective="regression", **LGBM)
        m.fit(Xtr, (ytr - mu) / sd)
        pred = mu + sd * m.predict(Xte)
        row["r2"] = float(r2_score(yte, pred))
        row["rmse"] = float(np.sqrt(mean_squared_error(yte, pred)))
        return row
    classes = sorted(set(ytr.astype(str)))
    index = {c: i for i, c in enumerate(classes)}
    ytr_i = ytr.astype(str).map(index).to_numpy()
    yte_i = yte.astype(str).map(index).to_numpy()
    if task == "binary":
        m = lgb.LGBMClassifier(objective="binary", **LGBM)
        m.fit(Xtr, ytr_i)
        p = m.predict_proba(Xte)[:, 1]
        row["accuracy"] = float(accuracy_score(yte_i, (p >= 0.5).astype(int)))
        row["auc"] = float(roc_auc_score(yte_i, p))
    else:
        m = lgb.LGBMClassifier(objective="multiclass", **LGBM)
        m.fit(Xtr, ytr_i)
        pred = m.predict_proba(Xte).argmax(axis=1)
        row["accuracy"] = float(accuracy_score(yte_i, pred))
        row["macro_f1"] = float(f1_score(yte_i, pred, average="macro"))
    return row


def figures(task, params, Xtr, ytr, Xte, yte):
    row = {}
    if task == "regression":
        mu, sd = float(ytr.mean()), float(ytr.std(ddof=0))
        m = xgb.XGBRegressor(objective="reg:squarederror", base_score=0.0, **params)
        m.fit(Xtr, (ytr - mu) / sd)
        pred = mu + sd * m.predict(Xte)
        row["r2"] = float(r2_score(yte, pred))
        row["rmse"] = float(np.sqrt(mean_squared_error(yte, pred)))
    else:
        classes = sorted(set(ytr.astype(str)))
        index = {c: i for i, c in enumerate(classes)}
        ytr_i = ytr.astype(str).map(index).to_numpy()
        yte_i = yte.astype(str).map(index).to_numpy()
        if task == "binary":
            m = xgb.XGBClassifier(objective="binary:logistic", base_score=0.5, **params)
            m.fit(Xtr, ytr_i)
            p = m.predict_proba(Xte)[:, 1]
            row["accuracy"] = float(accuracy_score(yte_i, (p >= 0.5).astype(int)))
            row["auc"] = float(roc_auc_score(yte_i, p))
        else:
            m = xgb.XGBClassifier(objective="multi:softprob", base_score=0.5, **params)
            m.fit(Xtr, ytr_i)
            pred = m.predict_proba(Xte).argmax(axis=1)
            row["accuracy"] = float(accuracy_score(yte_i, pred))
            row["macro_f1"] = float(f1_score(yte_i, pred, average="macro"))
    return row


if __name__ == "__main__":
    main()
