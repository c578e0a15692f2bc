#!/usr/bin/env python3
"""How much a small table's test figure moves with the bin cuts alone:
XGBoost (hist at several max_bin, and exact) and LightGBM (several max_bin)
with scripts/xgboost_reference.py's settings on one train/test split.
Prints one JSON object: {"xgb_hist": {bins: score}, "xgb_exact": score,
"lgbm": {bins: score}} (R² for regression, accuracy otherwise).

    /work/venv-q/bin/python scripts/bin_sensitivity.py --train d/train.csv \\
        --test d/test.csv --label progression --task regression --bins 64,128,256,512,1024
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import xgboost_reference as ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--task", required=True, choices=["binary", "multiclass", "regression"])
    ap.add_argument("--bins", default="64,128,256,512,1024")
    a = ap.parse_args()
    Xtr, ytr = ref.load(a.train, a.label, [])
    Xte, yte = ref.load(a.test, a.label, [])
    key = "r2" if a.task == "regression" else "accuracy"
    base = dict(tree_method="hist", max_bin=256, n_estimators=100, max_depth=6,
                learning_rate=0.1, reg_lambda=1.0, min_child_weight=1.0, gamma=0.0,
                subsample=1.0, colsample_bytree=1.0, n_jobs=1, random_state=0)
    out = {"xgb_hist": {}, "lgbm": {}}
    for b in [int(x) for x in a.bins.split(",")]:
        out["xgb_hist"][b] = ref.figures(a.task, dict(base, max_bin=b), Xtr, ytr, Xte, yte)[key]
        saved = ref.LGBM["max_bin"]
        ref.LGBM["max_bin"] = b
        out["lgbm"][b] = ref.lgbm_figures(a.task, Xtr, ytr, Xte, yte)[key]
        ref.LGBM["max_bin"] = saved
    exact = dict(base, tree_method="exact")
    del exact["max_bin"]
    out["xgb_exact"] = ref.figures(a.task, exact, Xtr, ytr, Xte, yte)[key]
    out["distinct_train_values"] = {c: int(Xtr[c].nunique()) for c in Xtr.columns}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
