#!/usr/bin/env bash
# Peak resident memory of whole searches, nas against Optuna + PyTorch on the same data in the
# same invocation (this machine is shared: never compare with a figure from another day).
#
# usage: benches/memory.sh [--quick] [--mnist DIR] [--peer-mnist]
#   --quick       fewer trials (a smoke run of the script itself)
#   --mnist DIR   also a 20-trial search of search_spaces/mlp.ron on an IDX directory of 28x28
#                 images (make one with: python3 ../shared/peers/make_idx.py DIR 60000 10000 28 28)
#   --peer-mnist  run the peer on that data too (slow: hours on 2 cores)
# The peer venv comes from ../shared/peers/setup.sh (default ~/.cache/nas-peers-venv; override
# with PEER_PYTHON). Without it the peer columns say "-".
# Each line: case, nas peak, peer peak, nas/peer. Also 10 vs 100 one-epoch trials of one size
# (a leak shows as growth with the trial count). Needs GNU time (/usr/bin/time, Debian `time`).
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0; MNIST=""; PEER_MNIST=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --mnist) MNIST="$2"; shift ;;
    --peer-mnist) PEER_MNIST=1 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
. benches/lib.sh
need_gnu_time
build_nas
T_MLP=20; T_CNN=30
if [ "$QUICK" = 1 ]; then T_MLP=3; T_CNN=3; fi

# Peak RSS in MB of a command (its output goes to $OUT/log), "failed" if it fails.
peak() {
  local wall mb
  read -r wall mb < <(timed "$@")
  [ "$mb" = "-" ] && mb="failed"
  echo "$mb"
}

peer() { # family data trials
  if [ -x "$PY" ]; then
    peak "$PY" "$PEERS/search.py" --family "$1" --data "$2" --trials "$3" --sampler random \
      --threads 2 --quiet --out "$OUT/peer.json"
  else
    echo "-"
  fi
}

row() { # case nas peer
  local ratio="-"
  if [[ "$2" =~ ^[0-9]+$ && "$3" =~ ^[0-9]+$ ]]; then
    ratio=$(awk -v a="$2" -v b="$3" 'BEGIN { printf "%.2f", a / b }')
  fi
  printf '| %s | %s MB | %s MB | %s |\n' "$1" "$2" "$3" "$ratio"
}

echo "| search | nas peak RSS | Optuna + PyTorch peak RSS | nas / peer |"
echo "|---|---:|---:|---:|"
row "MLP, digits, $T_MLP trials (README search)" \
  "$(peak "$NAS" search --space search_spaces/mlp.ron --trials $T_MLP --workers 2 --results "$OUT/r")" \
  "$(peer mlp digits $T_MLP)"
row "CNN, digits, $T_CNN trials" \
  "$(peak "$NAS" search --space search_spaces/cnn.ron --trials $T_CNN --workers 2 --results "$OUT/r")" \
  "$(peer cnn digits $T_CNN)"
if [ -n "$MNIST" ]; then
  p="-"; [ "$PEER_MNIST" = 1 ] && p="$(peer mlp "$MNIST" $T_MLP)"
  row "MLP, $MNIST, $T_MLP trials" \
    "$(peak "$NAS" search --space search_spaces/mlp.ron --data "$MNIST" --trials $T_MLP --workers 2 --results "$OUT/r" --study mnist)" \
    "$p"
fi

# The same one-epoch CNN, 10 and 100 times: peak memory must not grow with the trial count.
cat >"$OUT/same.ron" <<'EOF'
(
    task: Classification,
    data: "digits",
    model: Cnn((stages: Fixed(2), blocks_per_stage: Fixed(1), block: Choice([Plain, Residual]),
        width: Fixed(16), kernel: Fixed(3), downsample: Fixed(MaxPool), activation: Fixed(Relu),
        dropout: Range(0.0, 0.3), batch_norm: Fixed(true))),
    train: (optimizer: Fixed(Adam), learning_rate: LogRange(5e-4, 1e-2), batch_size: Fixed(32),
        max_epochs: Fixed(1), patience: Fixed(4)),
)
EOF
ten=$(peak "$NAS" search --space "$OUT/same.ron" --folds 1 --trials 10 --workers 2 --no-final --results "$OUT/r10")
hundred=$(peak "$NAS" search --space "$OUT/same.ron" --folds 1 --trials 100 --workers 2 --no-final --results "$OUT/r100")
echo
echo "one-epoch CNN trials of one size, peak RSS: 10 trials $ten MB, 100 trials $hundred MB" \
  "($(awk -v a="$hundred" -v b="$ten" 'BEGIN { printf "%.2f", a / b }')x)"
