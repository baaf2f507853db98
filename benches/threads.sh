#!/usr/bin/env bash
# How one trial scales with its threads: the same trial (the peer's fixed CNN and MLP, 3 folds,
# 2 and 5 epochs, on synthetic 28x28 images) with --threads-per-trial 1 and 2, one worker, in this
# invocation. A trial's folds train in parallel on its threads, so 3 folds on 2 threads can be at
# most 1.5x faster (two rounds instead of three); 2 or 4 folds, 2x.
#
# usage: benches/threads.sh [N_TRAIN]   (default 6000 training images; needs python3 with numpy
# for ../shared/peers/make_idx.py, and GNU time)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-6000}"
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
PEERS="$(pwd)/../shared/peers"
PY="${PEER_PYTHON:-$HOME/.cache/nas-peers-venv/bin/python}"
[ -x "$PY" ] || PY=python3
cargo build --release --quiet
NAS="$(pwd)/target/release/nas"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
"$PY" "$PEERS/make_idx.py" "$OUT/data" "$N" 1000 28 28 >/dev/null

wall() { # space threads
  /usr/bin/time -f "%e" "$NAS" search --space "$1" --data "$OUT/data" --trials 1 --workers 1 \
    --threads-per-trial "$2" --no-final --quiet --results "$OUT/r" --study "t$RANDOM" 2>&1 >/dev/null | tail -1
}

echo "| trial (3 folds, $N images of 28x28) | 1 thread s | 2 threads s | speed-up |"
echo "|---|---:|---:|---:|"
for family in mlp cnn; do
  space="$PEERS/spaces/fixed_$family.ron"
  one=$(wall "$space" 1)
  two=$(wall "$space" 2)
  printf '| fixed %s | %s | %s | %.2fx |\n' "$family" "$one" "$two" "$(awk -v a="$one" -v b="$two" 'BEGIN { print a / b }')"
done
