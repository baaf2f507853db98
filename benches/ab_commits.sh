#!/usr/bin/env bash
# Trainer speed of several commits, interleaved in one invocation: builds the `trainer` bench of
# each commit in a scratch worktree, then runs every case on every build in turn, ROUNDS times,
# and prints samples/s and user CPU seconds per run, then the best of each. User CPU time is the
# steadier figure on a shared machine: it leaves out time spent waiting for a core.
#
# usage: benches/ab_commits.sh [--rounds R] [--cases mlp,cnn,...] COMMIT [COMMIT ...]
#   e.g. benches/ab_commits.sh eb4d965 HEAD
# Only nas runs here (PyTorch is left out: cargo bench --bench trainer compares with it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3; CASES="mlp,cnn,separable,residual"; COMMITS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift ;;
    --cases) CASES="$2"; shift ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) COMMITS+=("$1") ;;
  esac
  shift
done
[ ${#COMMITS[@]} -gt 0 ] || { echo "usage: $0 [--rounds R] [--cases LIST] COMMIT [COMMIT ...]" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
ROOT="$(pwd)"
WORK="$ROOT/target/ab-commits"
mkdir -p "$WORK/bin"
for c in "${COMMITS[@]}"; do
  sha=$(git rev-parse --short "$c")
  [ -x "$WORK/bin/$sha" ] && continue
  wt="$WORK/wt-$sha"
  [ -d "$wt" ] || git worktree add --detach "$wt" "$sha" >/dev/null
  # All commits share one target directory of their own (the dependencies build once), never
  # this checkout's: cargo records a crate's sources by path, so a build from a worktree made the
  # checkout's next build count as fresh. Every commit builds `nas` into the same file names and
  # cargo may take another worktree's build as fresh, so `nas` itself is cleaned first. The
  # build keeps reading its fixed spaces from its worktree, which therefore stays.
  (cd "$wt" && CARGO_TARGET_DIR="$WORK/target" cargo clean -q -p nas --release)
  bin=$(cd "$wt" && CARGO_TARGET_DIR="$WORK/target" cargo bench --bench trainer --no-run 2>&1 |
        sed -n 's/.*Executable .*(\(.*\))/\1/p' | tail -1)
  cp "$bin" "$WORK/bin/$sha"
done
printf "| commit | case | round | samples/s | user s |\n|---|---|---:|---:|---:|\n"
for r in $(seq "$ROUNDS"); do
  for case in ${CASES//,/ }; do
    for c in "${COMMITS[@]}"; do
      sha=$(git rev-parse --short "$c")
      line=$(/usr/bin/time -f "%U" -o "$WORK/time" env PEER_PYTHON=/nonexistent NAS_PEERS="${NAS_PEERS:-$ROOT/../shared/peers}" \
             "$WORK/bin/$sha" --bench --only "$case" 2>&1 | grep " nas:" || true)
      sps=$(echo "$line" | sed -n 's/.*-> *\([0-9]*\) samples\/s.*/\1/p')
      echo "| $sha | $case | $r | ${sps:--} | $(cat "$WORK/time") |"
    done
  done
done | tee "$WORK/runs.md"
echo
echo "best of $ROUNDS (highest samples/s, lowest user s):"
awk -F'|' 'NR > 0 && $2 ~ /[0-9a-f]/ {
  k = $2 "|" $3; s = $5 + 0; u = $6 + 0
  if (!(k in bs) || s > bs[k]) bs[k] = s
  if (!(k in bu) || u < bu[k]) bu[k] = u
} END { for (k in bs) printf "%s | %d samples/s | %.2f user s\n", k, bs[k], bu[k] }' "$WORK/runs.md" | sort -t'|' -k2,2 -k1,1
