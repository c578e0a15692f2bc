#!/usr/bin/env bash
# Centralized scikit-learn figures for the model-family and tabular-data
# targets (docs/models.md, docs/tabular.md): splits the bundled wine,
# diabetes, penguins, breast cancer and digits data and the outlier fixture
# (tests/fixtures/outliers) exactly as `fedhe simulate --data …
# --clients 4 --seed 42` does (`fedhe split`, stratified 20 % test), fits
# scikit-learn on the training rows and scores the test rows. Writes
# tests/fixtures/sklearn_{wine,diabetes,penguins,penguins_mass,wdbc,digits,outliers}.json, which
# the federation tests compare against. Penguins: `island`, `sex` and `year`
# one-hot encoded (as FedHE proposes), missing cells imputed as FedHE does.
#
#   python3 -m venv /tmp/skvenv && /tmp/skvenv/bin/pip install -r scripts/requirements-reference.txt
#   cargo build --release && PYTHON=/tmp/skvenv/bin/python scripts/sklearn_comparison.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fedhe=${FEDHE:-$root/target/release/fedhe}
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$fedhe" split --data "$root/sample_data/wine.csv" --label cultivar --clients 4 --seed 42 --out wine >/dev/null
"$fedhe" split --data "$root/sample_data/diabetes.csv" --label progression --clients 4 --seed 42 --out diabetes >/dev/null
"$python" "$root/scripts/sklearn_reference.py" --train wine/train.csv --test wine/test.csv \
    --label cultivar --task multiclass --json >"$root/tests/fixtures/sklearn_wine.json"
"$python" "$root/scripts/sklearn_reference.py" --train diabetes/train.csv --test diabetes/test.csv \
    --label progression --task regression --json >"$root/tests/fixtures/sklearn_diabetes.json"
"$fedhe" split --data "$root/sample_data/penguins.csv" --label species --clients 4 --seed 42 --out penguins >/dev/null 2>&1
"$python" "$root/scripts/sklearn_reference.py" --train penguins/train.csv --test penguins/test.csv \
    --label species --task multiclass --categorical island,sex,year --json >"$root/tests/fixtures/sklearn_penguins.json"
"$fedhe" split --data "$root/sample_data/penguins.csv" --label body_mass_g --clients 4 --seed 42 --out mass >/dev/null 2>&1
"$python" "$root/scripts/sklearn_reference.py" --train mass/train.csv --test mass/test.csv \
    --label body_mass_g --task regression --categorical species,island,sex,year --json \
    >"$root/tests/fixtures/sklearn_penguins_mass.json"
"$fedhe" split --data "$root/sample_data/breast_cancer_wdbc.csv" --label diagnosis --clients 4 --seed 42 --out wdbc >/dev/null
"$python" "$root/scripts/sklearn_reference.py" --train wdbc/train.csv --test wdbc/test.csv \
    --label diagnosis --task binary --json >"$root/tests/fixtures/sklearn_wdbc.json"
"$fedhe" split --data "$root/sample_data/digits.csv" --label digit --clients 4 --seed 42 --out digits >/dev/null
"$python" "$root/scripts/sklearn_reference.py" --train digits/train.csv --test digits/test.csv \
    --label digit --task multiclass --json >"$root/tests/fixtures/sklearn_digits.json"
"$fedhe" split --data "$root/tests/fixtures/outliers/diamonds_like.csv" --label price --clients 4 --seed 42 --out outliers >/dev/null
"$python" "$root/scripts/sklearn_reference.py" --train outliers/train.csv --test outliers/test.csv \
    --label price --task regression --json >"$root/tests/fixtures/sklearn_outliers.json"
echo "wrote tests/fixtures/sklearn_{wine,diabetes,penguins,penguins_mass,wdbc,digits,outliers}.json"
