#!/usr/bin/env bash
# How to split a machine's cores between trials: the same study with every workers x
# threads-per-trial split whose product is the core count (16 cores: 16x1, 8x2, 4x4, 2x8, 1x16;
# this 2-core machine: 2x1, 1x2), one after the other in this invocation. Prints wall time,
# trials per hour, speed against the one-thread-per-worker split and peak memory of each, and
# checks that every split gives the same leaderboard (a trial's values do not depend on the
# number of workers or threads). Each trial's folds train in parallel on its threads and its ops
# split across the threads the folds leave idle; a worker without trials left lends its threads.
#
# usage: benches/split.sh [--space FILE] [--trials N] [--train N] [--cores C] [--folds K]
#   --space  default benches/spaces/fixed_residual.ron (residual CNN, batch norm, 2 epochs);
#            trials of a fixed space all cost the same, so the splits differ only in how they
#            use the cores (for a study of mixed sizes pass a space of your own: random
#            search, so that every split trains the same trials whichever ends first)
#   --trials default 2 x cores; --train: synthetic 28x28 training images (default 6000, made by
#            ../shared/peers/make_idx.py, needs numpy); --cores default nproc; --folds default 3
# Needs GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
SPACE="$(pwd)/benches/spaces/fixed_residual.ron"; TRIALS=""; N=6000; CORES="$(nproc)"; FOLDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --space) SPACE="$2"; shift ;;
    --trials) TRIALS="$2"; shift ;;
    --train) N="$2"; shift ;;
    --cores) CORES="$2"; shift ;;
    --folds) FOLDS="$2"; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
TRIALS="${TRIALS:-$((2 * CORES))}"
. benches/lib.sh
need_gnu_time
build_nas
synthetic_images "$N"

echo "$TRIALS trials of $(basename "$SPACE"), $N + 1000 images of 28x28, $FOLDS folds, $CORES cores"
echo
echo "| workers x threads | wall s | trials per hour | speed vs ${CORES}x1 | peak MB | leaderboard |"
echo "|---|---:|---:|---:|---:|---|"
base=""
for ((w = CORES; w >= 1; w--)); do
  ((CORES % w == 0)) || continue
  t=$((CORES / w))
  read -r s mb < <(timed "$NAS" search --space "$SPACE" --data "$OUT/data" --trials "$TRIALS" \
    --folds "$FOLDS" --strategy random --seed 0 --workers "$w" --threads-per-trial "$t" --no-final --quiet \
    --results "$OUT/r" --study "w${w}t$t")
  [ "$s" != "-" ] || exit 1
  # trial number and CV of each trial, in trial order
  cut -d, -f2,7,8 "$OUT/r/w${w}t$t/leaderboard.csv" | tail -n +2 | sort -n >"$OUT/cv$w"
  if [ -z "$base" ]; then
    base="$s"; same="reference"; cp "$OUT/cv$w" "$OUT/cv_ref"
  elif cmp -s "$OUT/cv$w" "$OUT/cv_ref"; then
    same="same CVs"
  else
    same="DIFFERENT CVs"
  fi
  awk -v w="$w" -v t="$t" -v s="$s" -v b="$base" -v n="$TRIALS" -v mb="$mb" -v same="$same" \
    'BEGIN { printf "| %dx%d | %.1f | %.0f | %.2fx | %d | %s |\n", w, t, s, n * 3600 / s, b / s, mb, same }'
done
