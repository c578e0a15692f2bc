#!/usr/bin/env bash
# Issue 20 part 2: digits, 8 sites (IID and Dirichlet 0.1), MLP 32, 20
# rounds x 5 local epochs, encrypted and masked over loopback HTTP: every
# server optimizer and FedProx side by side, seeds 1 2 3 (the seed also
# draws the split). Prints "rule: acc1 acc2 acc3 median".
# Usage: scripts/fedopt_skew.sh [path/to/fedhe] [extra simulate flags...]
set -euo pipefail
FEDHE=${1:-target/release/fedhe}
shift || true
EXTRA=("$@")
row() { # label split flags...
  local label=$1 split=$2; shift 2
  local accs=()
  for seed in ${SEEDS:-1 2 3}; do
    accs+=("$("$FEDHE" simulate --data sample_data/digits.csv --label digit --clients 8 \
      --split "$split" --model mlp --hidden 32 --seed "$seed" "$@" "${EXTRA[@]}" 2>&1 \
      | sed -n 's/^test (.*accuracy \([0-9.]*\).*/\1/p')")
  done
  local med
  med=$(printf '%s\n' "${accs[@]}" | sort -n | sed -n 2p)
  echo "$label: ${accs[*]} median $med"
}
SKEW=dirichlet:0.1
SGD=(--optimizer sgd --lr 0.1 --l2 0 --schedule constant)
row "IID, defaults" iid
row "IID, local SGD" iid "${SGD[@]}"
row "FedAvg, defaults" $SKEW
row "FedAvg, local SGD" $SKEW "${SGD[@]}"
row "FedAvgM" $SKEW --server-optimizer fedavgm
row "FedAdam" $SKEW --server-optimizer fedadam
row "FedYogi" $SKEW --server-optimizer fedyogi
row "FedAdagrad" $SKEW --server-optimizer fedadagrad
row "FedProx 0.1, defaults" $SKEW --prox-mu 0.1
row "FedProx 0.1, constant schedule" $SKEW --prox-mu 0.1 --schedule constant
row "FedProx 0.1 + FedAdam" $SKEW --prox-mu 0.1 --server-optimizer fedadam
