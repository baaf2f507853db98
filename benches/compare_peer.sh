#!/usr/bin/env bash
# Whole searches side by side: Optuna + PyTorch (../shared/peers/search.py) and `nas search` on
# the same space and data, TPE, the same trials and seeds, one right after the other in this
# invocation (this machine is shared: never compare with a figure from another day).
#
# usage: benches/compare_peer.sh [--family mlp|cnn] [--seeds "0 1 2 3 4"] [--trials 20] [--data digits]
#                                [--keep DIR]
#   mlp: ../shared/peers/spaces/peer_mlp.ron; cnn: benches/spaces/peer_cnn.ron (the peer's CNN
#   space written exactly in the architecture language; tests/peer_space.rs checks it).
# Both use the machine's 2 cores: the peer 2 torch threads, nas 2 workers of one thread each.
# Prints one row per seed and engine (best CV, test score of the retrained best, wall time, peak
# RSS, and the training work each search did, benches/search_work.py: TFLOP and GFLOP per second of
# wall time, since the two samplers pick different networks), then the medians and nas/peer
# ratios. --keep DIR keeps both engines' records there (the peer's result JSON per seed,
# peer<seed>.json, and nas's results folder r/) for a look at each trial. The peer venv comes
# from ../shared/peers/setup.sh (default ~/.cache/nas-peers-venv; override with PEER_PYTHON).
# Needs GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
FAMILY=mlp; SEEDS="0 1 2 3 4"; TRIALS=20; DATA=digits; KEEP=""
while [ $# -gt 0 ]; do
  case "$1" in
    --family) FAMILY="$2"; shift ;;
    --seeds) SEEDS="$2"; shift ;;
    --trials) TRIALS="$2"; shift ;;
    --data) DATA="$2"; shift ;;
    --keep) KEEP="$2"; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case "$FAMILY" in
  mlp) SPACE="$(pwd)/../shared/peers/spaces/peer_mlp.ron" ;;
  cnn) SPACE="$(pwd)/benches/spaces/peer_cnn.ron" ;;
  *) echo "--family is mlp or cnn" >&2; exit 2 ;;
esac
. benches/lib.sh
need_gnu_time
need_peer_python
build_nas "$KEEP"
rm -f "$OUT/rows"

# GFLOP per second of wall time from TFLOP ($1) and seconds ($2).
rate() { "$PY" -c 'import sys; print("%.1f" % (1e3 * float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }

echo "| seed | engine | best CV | test | wall s | peak MB | training TFLOP | GFLOP/s of wall |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|"
for seed in $SEEDS; do
  read -r pw pm < <(timed "$PY" "$PEERS/search.py" --data "$DATA" --family "$FAMILY" --trials "$TRIALS" \
    --sampler tpe --seed "$seed" --threads 2 --quiet --out "$OUT/peer$seed.json")
  read -r pcv pte < <("$PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("%.4f %.4f" % (r.get("best", {}).get("cv_score", float("nan")), r.get("test", {}).get("score", float("nan"))))' "$OUT/peer$seed.json")
  rm -rf "$OUT/r/s$seed"  # a kept folder from an earlier run: start the study afresh
  read -r nw nm < <(timed "$NAS" search --space "$SPACE" --data "$DATA" --strategy tpe --trials "$TRIALS" \
    --seed "$seed" --workers 2 --results "$OUT/r" --study "s$seed" --quiet)
  ncv=$("$NAS" leaderboard --results "$OUT/r" --study "s$seed" --format json --top 1 |
    "$PY" -c 'import json, sys; print("%.4f" % json.load(sys.stdin)[0]["cv_mean"])')
  nte=$("$PY" -c 'import json, sys; print("%.4f" % json.load(open(sys.argv[1]))["test_score"])' "$OUT/r/s$seed/test.json")
  # Training work of each search (the two samplers pick different networks) and its rate.
  read -r pt nt < <("$PY" benches/search_work.py "$OUT/peer$seed.json" "$NAS" "$OUT/r" "s$seed")
  echo "| $seed | Optuna + PyTorch | $pcv | $pte | $pw | $pm | $pt | $(rate "$pt" "$pw") |" | tee -a "$OUT/rows"
  echo "| $seed | nas | $ncv | $nte | $nw | $nm | $nt | $(rate "$nt" "$nw") |" | tee -a "$OUT/rows"
done
# Medians per engine, then nas / peer.
"$PY" - "$OUT/rows" <<'PY'
import statistics, sys
rows = [l.strip().strip("|").split("|") for l in open(sys.argv[1])]
by = {}
for r in rows:
    seed, engine, *vals = [c.strip() for c in r]
    by.setdefault(engine, []).append([float(v) for v in vals])
med = {e: [statistics.median(c) for c in zip(*v)] for e, v in by.items()}
p, n = med["Optuna + PyTorch"], med["nas"]
print()
print("| median over seeds | best CV | test | wall s | peak MB | training TFLOP | GFLOP/s of wall |")
print("|---|---:|---:|---:|---:|---:|---:|")
for e in ("Optuna + PyTorch", "nas"):
    m = med[e]
    print(f"| {e} | {m[0]:.4f} | {m[1]:.4f} | {m[2]:.1f} | {m[3]:.0f} | {m[4]:.2f} | {m[5]:.1f} |")
print(f"| nas / peer | {n[0] / p[0]:.3f} | {n[1] / p[1]:.3f} | {n[2] / p[2]:.2f}x | {n[3] / p[3]:.2f}x "
      f"| {n[4] / p[4]:.2f}x | {n[5] / p[5]:.2f}x |")
PY
