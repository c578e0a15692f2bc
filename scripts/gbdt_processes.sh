#!/usr/bin/env bash
# Gradient-boosted trees over loopback HTTP between processes (docs/models.md):
# an a9a-sized table (scripts/a9a_like_csv.py) dealt into 3 site files, a
# masked plan (depth 6, 256 bins, no validation share, as `fedhe bench gbdt`),
# `fedhe keygen`, `fedhe serve` with a state folder, and three `fedhe client`
# processes, each with its state file and mask ledger. Prints each site's
# per-tree lines, its `done:` line and the median per tree.
#
#   cargo build --release && scripts/gbdt_processes.sh [TREES]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fedhe=${FEDHE:-$root/target/release/fedhe}
trees=${1:-20}
work=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
python3 "$root/scripts/a9a_like_csv.py" "$work/sites" 3
"$fedhe" plan init --label label --model gbdt --trees "$trees" --depth 6 --bins 256 \
  --roster a,b,c --data "$work/sites/site_1.csv" --out "$work/plan.toml" >/dev/null
sed -i 's/^validation_share = .*/validation_share = 0.0/' "$work/plan.toml"
grep -q '^validation_share = 0.0' "$work/plan.toml"
"$fedhe" keygen --out "$work/keys" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn "$fedhe" serve --bind "127.0.0.1:$port" --public-key "$work/keys/public.key" \
  --plan "$work/plan.toml" --state-dir "$work/state" \
  --operator-token-file "$work/operator.token" >"$work/serve.log" 2>&1 &
server=$!
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
pids=()
for k in 1 2 3; do
  id=$(printf "\\x$(printf %x $((96 + k)))")
  "$fedhe" client --server "http://127.0.0.1:$port" --name "$id" --id "$id" \
    --key "$work/keys/secret.key" --data "$work/sites/site_$k.csv" \
    --state "$work/$id.state.json" --model-out "$work/$id.json" >"$work/$id.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
for id in a b c; do
  echo "== site $id"
  grep -E '^(bins|tree [0-9]+/|done:)' "$work/$id.log" | sed -n '1,3p;$p'
  grep -E '^tree [0-9]+/' "$work/$id.log" | grep -v '^tree 1/' |
    sed -E 's/.* rounds, ([0-9]+) ms.*/\1/' | sort -n |
    awk '{v[NR]=$1} END {if (NR) printf "median per tree (trees 2-): %d ms over %d trees\n", (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2), NR}'
done
[ "$status" = 0 ] || { echo "a client failed:"; tail -5 "$work"/{a,b,c}.log "$work/serve.log"; exit 1; }
