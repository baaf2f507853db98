#!/usr/bin/env bash
# How one trial scales with its threads: the same trial with --threads-per-trial 1 and 2, one
# worker, in this invocation. A trial's folds train in parallel on its threads, and its ops
# (matrix products, convolutions, batch norm) split their work across the threads its folds
# leave idle: with 3 folds on 2 threads the third fold trains alone on both, with one fold
# (as the final model on all training data) every op is split. Every value is the same on any
# number of threads, so the leaderboards agree (the script checks the CV column).
#
# usage: benches/threads.sh [N_TRAIN]   (default 6000 training images; needs python3 with numpy
# for ../shared/peers/make_idx.py, and GNU time)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-6000}"
. benches/lib.sh
need_gnu_time
build_nas
synthetic_images "$N"

wall() { # space data folds threads: prints "seconds cv"
  local study="t$RANDOM$RANDOM"
  local s
  s=$(/usr/bin/time -f "%e" "$NAS" search --space "$1" --data "$2" --trials 1 --folds "$3" \
    --workers 1 --threads-per-trial "$4" --no-final --quiet --results "$OUT/r" --study "$study" \
    2>&1 >/dev/null | tail -1)
  echo "$s $(grep -o '[01]\.[0-9]* ± [0-9.]*' "$OUT/r/$study/leaderboard.txt" | head -1 | cut -d' ' -f1)"
}

echo "| trial | data | folds | 1 thread s | 2 threads s | speed-up | CV on 1 / 2 threads |"
echo "|---|---|---:|---:|---:|---:|---|"
row() { # label space data data-label folds
  read -r one cv1 <<<"$(wall "$2" "$3" "$5" 1)"
  read -r two cv2 <<<"$(wall "$2" "$3" "$5" 2)"
  printf '| %s | %s | %s | %s | %s | %.2fx | %s / %s |\n' "$1" "$4" "$5" "$one" "$two" \
    "$(awk -v a="$one" -v b="$two" 'BEGIN { print a / b }')" "$cv1" "$cv2"
}
for family in mlp cnn; do
  for folds in 3 1; do
    row "fixed $family" "$PEERS/spaces/fixed_$family.ron" "$OUT/data" "$N x 28x28" "$folds"
  done
done
row "64-channel residual k5 (benches/spaces/digits_residual_k5_64.ron)" \
  benches/spaces/digits_residual_k5_64.ron digits "digits 8x8" 1
