#!/usr/bin/env bash
# Why FedHE's gbdt R² on diabetes differs from XGBoost hist's (docs/models.md,
# "Quality against XGBoost and LightGBM"): on five `fedhe split --seed S`
# splits (S = 42, the fixture's, then 1-4), FedHE (`fedhe train --model
# gbdt`, 256 bins) next to XGBoost hist (max_bin 256), XGBoost exact and
# LightGBM (scripts/xgboost_reference.py), with each split's largest count
# of distinct training values in a column; then on seed 42 XGBoost hist and
# LightGBM over max_bin (scripts/bin_sensitivity.py). Output:
# scripts/diabetes_bins.txt.
#
#   python3 -m venv /work/venv-q && /work/venv-q/bin/pip install xgboost lightgbm pandas scikit-learn
#   cargo build --release && PYTHON=/work/venv-q/bin/python scripts/diabetes_bins.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fedhe=${FEDHE:-$root/target/release/fedhe}
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
  echo "seed  FedHE   XGB-hist  XGB-exact  LightGBM  most distinct values (column)"
  for s in 42 1 2 3 4; do
    d=$work/s$s
    "$fedhe" split --data "$root/sample_data/diabetes.csv" --label progression --task regression \
      --clients 4 --seed "$s" --out "$d" >/dev/null 2>&1
    "$fedhe" train --data "$d/train.csv" --label progression --task regression --model gbdt \
      --out "$d/m.json" >/dev/null 2>&1
    f=$("$fedhe" predict --model "$d/m.json" --data "$d/test.csv" | awk '$1 == "r2" {print $2}')
    "$python" "$root/scripts/xgboost_reference.py" --train "$d/train.csv" --test "$d/test.csv" \
      --label progression --task regression --json >"$d/ref.json"
    "$python" - "$d" "$s" "$f" <<'PY'
import json, sys
import pandas as pd
d, s, f = sys.argv[1:]
r = json.load(open(f"{d}/ref.json"))
x = pd.read_csv(f"{d}/train.csv").drop(columns=["progression"]).nunique()
print(f"{s:>4}  {float(f):.4f}  {r['r2']:.4f}    {r['exact_r2']:.4f}     {r['lgbm_r2']:.4f}    "
      f"{x.max()} ({x.idxmax()})")
PY
  done
  echo
  echo "seed 42, R² by max_bin (XGBoost hist, LightGBM):"
  "$python" "$root/scripts/bin_sensitivity.py" --train "$work/s42/train.csv" --test "$work/s42/test.csv" \
    --label progression --task regression --bins 64,128,200,255,256,261,300,512,1024 |
    "$python" -c '
import json, sys
r = json.load(sys.stdin)
h, l = r["xgb_hist"], r["lgbm"]
for b in h:
    print(f"max_bin {b:>5}: XGBoost hist {h[b]:.4f}, LightGBM {l[b]:.4f}")
e = r["xgb_exact"]
print(f"XGBoost exact: {e:.4f}")
print("distinct training values per column:", r["distinct_train_values"])
'
} | tee "$root/scripts/diabetes_bins.txt"
