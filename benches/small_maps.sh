#!/usr/bin/env bash
# One network at a time on digits' 8x8 images, one thread, nas against PyTorch in this invocation:
# the five fixed networks of benches/spaces/digits_*.ron, each also built by the peer's own model
# code (../shared/peers/search.py's build_model and Trainer, imported, not copied), trained on the
# same 80/20 split size for 20 epochs with Adam. The CNN searches over the peer's space are made of
# such networks: small maps (8x8, 4x4, 2x2) with up to 64 channels, unlike the 28x28 trainer bench.
#
# usage: benches/small_maps.sh [--rounds R]   (default 2: nas and PyTorch alternate, best of each)
# Prints seconds per network for both and PyTorch's time over nas's (above 1: nas is faster).
# Needs the peer venv (../shared/peers/setup.sh; override with PEER_PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=2
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
. benches/lib.sh
need_peer_python
build_nas

# The same networks in the peer's parameter names (its search space, ../shared/peers/README.md).
peer() {
  "$PY" - "$PEERS" "$1" <<'PY'
import sys, time
sys.path.insert(0, sys.argv[1])
import search as S
import torch
torch.set_num_threads(1)
common = dict(activation="relu", batchnorm=True, optimizer="adam", lr=1e-3, batch_size=64, weight_decay=1e-4)
nets = {
    "digits_residual_k3": dict(n_stages=2, blocks_s0=1, channels_s0=64, blocks_s1=1, channels_s1=64,
                               block_type="residual", kernel=3, downsample="maxpool", dropout=0.06),
    "digits_plain_k5": dict(n_stages=2, blocks_s0=1, channels_s0=64, blocks_s1=1, channels_s1=32,
                            block_type="plain", kernel=5, downsample="maxpool", dropout=0.16),
    "digits_separable_k5": dict(n_stages=1, blocks_s0=1, channels_s0=64, block_type="separable", kernel=5,
                                downsample="maxpool", dropout=0.28),
    "digits_residual_k5_stride": dict(n_stages=2, blocks_s0=2, channels_s0=16, blocks_s1=2, channels_s1=64,
                                      block_type="residual", kernel=5, downsample="stride", dropout=0.44,
                                      activation="tanh"),
    "digits_residual_k5_64": dict(n_stages=2, blocks_s0=1, channels_s0=64, blocks_s1=1, channels_s1=64,
                                  block_type="residual", kernel=5, downsample="maxpool", dropout=0.2),
}
p = dict(common); p.update(nets[sys.argv[2]])
data = S.load_data("digits")
tr = S.Trainer(data, "cnn", "global", 20, 100)
(itr, iva), = S.make_folds(data.y_tr, 1, 0, True)
t = time.perf_counter()
score, _, epochs, _ = tr.fit_fold(p, itr, iva, 0)
print("%.2f %.4f" % (time.perf_counter() - t, score))
PY
}

ours() {
  local study="s$RANDOM"
  "$NAS" search --space "benches/spaces/$1.ron" --data digits --trials 1 --folds 1 --workers 1 \
    --threads-per-trial 1 --no-final --quiet --results "$OUT/r" --study "$study" >/dev/null 2>&1
  "$NAS" leaderboard --results "$OUT/r" --study "$study" --format json |
    "$PY" -c 'import json, sys; r = json.load(sys.stdin)[0]; print("%.2f %.4f" % (r["seconds"], r["cv_mean"]))'
}

echo "| network (digits 8x8, 20 epochs, 1 thread) | PyTorch s | nas s | PyTorch / nas | val. accuracy PyTorch / nas |"
echo "|---|---:|---:|---:|---|"
for net in digits_residual_k3 digits_plain_k5 digits_separable_k5 digits_residual_k5_stride digits_residual_k5_64; do
  bp=""; bn=""
  for _ in $(seq "$ROUNDS"); do
    read -r tp ap < <(peer "$net")
    read -r tn an < <(ours "$net")
    bp=$("$PY" -c "print(min(x for x in [$tp, ${bp:-1e9}]))")
    bn=$("$PY" -c "print(min(x for x in [$tn, ${bn:-1e9}]))")
  done
  ratio=$("$PY" -c "print('%.2f' % ($bp / $bn))")
  echo "| $net | $bp | $bn | **${ratio}x** | $ap / $an |"
done
