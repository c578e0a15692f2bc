#!/usr/bin/env bash
# Centralized XGBoost and LightGBM figures for gradient-boosted trees (docs/models.md):
# splits the bundled data sets exactly as the scikit-learn comparison does
# (`fedhe split --clients 4 --seed 42`, stratified 20 % test), fits XGBoost
# (scripts/xgboost_reference.py: hist, 256 bins, 100 trees, depth 6, eta 0.1;
# LightGBM with the same settings, num_leaves 63)
# on the training rows and scores the test rows. Writes
# tests/fixtures/xgboost_reference.json, which tests/gbdt.rs compares
# `fedhe train --model gbdt` against. With FEDHE_TOO=1 it also prints
# FedHE's figures on the same splits.
#
#   python3 -m venv /work/venv-q && /work/venv-q/bin/pip install xgboost lightgbm pandas scikit-learn
#   (run with xgboost 3.2.0, lightgbm 4.7.0, scikit-learn 1.9.1, pandas 3.1.1, numpy 2.4.6, Python 3.11.7)
#   cargo build --release && PYTHON=/work/venv-q/bin/python scripts/xgboost_comparison.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fedhe=${FEDHE:-$root/target/release/fedhe}
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# name data label task categorical
sets=(
  "wdbc $root/sample_data/breast_cancer_wdbc.csv diagnosis binary -"
  "wine $root/sample_data/wine.csv cultivar multiclass -"
  "digits $root/sample_data/digits.csv digit multiclass -"
  "penguins $root/sample_data/penguins.csv species multiclass island,sex,year"
  "diabetes $root/sample_data/diabetes.csv progression regression -"
  "penguins_mass $root/sample_data/penguins.csv body_mass_g regression species,island,sex,year"
  "outliers $root/tests/fixtures/outliers/diamonds_like.csv price regression -"
)
out=()
for s in "${sets[@]}"; do
  read -r name data label task cat <<<"$s"
  [ "$cat" = "-" ] && cat=""
  "$fedhe" split --data "$data" --label "$label" --task "$task" --clients 4 --seed 42 --out "$name" >/dev/null 2>&1
  out+=("$("$python" "$root/scripts/xgboost_reference.py" --train "$name/train.csv" --test "$name/test.csv" \
      --label "$label" --task "$task" --categorical "$cat" --name "$name" --json)")
  if [ "${FEDHE_TOO:-}" = 1 ]; then
    "$fedhe" train --data "$name/train.csv" --label "$label" --task "$task" --model gbdt --out "$name/m.json" >/dev/null 2>&1 || true
    echo "== $name (FedHE gbdt)"; "$fedhe" predict --model "$name/m.json" --data "$name/test.csv" || true
  fi
done
( IFS=,; echo "[${out[*]}]" ) | "$python" -m json.tool >"$root/tests/fixtures/xgboost_reference.json"
echo "wrote tests/fixtures/xgboost_reference.json"
