# What the bench scripts share (sourced, from the checkout's root: `. benches/lib.sh`): the peer
# harness and its python, GNU time, the release binary and a scratch folder, a timed run, and
# synthetic 28x28 images.

PEERS="$(pwd)/../shared/peers"
# The peer venv's python (../shared/peers/setup.sh; override with PEER_PYTHON).
PY="${PEER_PYTHON:-$HOME/.cache/nas-peers-venv/bin/python}"

# Exits with 2 unless GNU time is installed (its -v report gives wall time and peak RSS).
need_gnu_time() {
  [ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
}

# Exits with 2 unless the peer venv is there.
need_peer_python() {
  [ -x "$PY" ] || { echo "no peer venv at $PY (run ../shared/peers/setup.sh)" >&2; exit 2; }
}

# Builds the release binary into $NAS and makes the scratch folder $OUT, removed on exit; with a
# folder as argument (a script's --keep DIR), $OUT is that folder, kept.
build_nas() {
  cargo build --release --quiet
  NAS="$(pwd)/target/release/nas"
  if [ -n "${1:-}" ]; then
    mkdir -p "$1"; OUT="$(cd "$1" && pwd)"
  else
    OUT="$(mktemp -d)"; trap 'rm -rf "$OUT"' EXIT
  fi
}

# Runs a command under GNU time, its output in $OUT/log; prints "wall_s peak_mb", or "- -"
# (with the log's tail on stderr) when it fails.
timed() {
  /usr/bin/time -v "$@" >"$OUT/log" 2>&1 || { tail -5 "$OUT/log" >&2; echo "- -"; return; }
  awk '/Elapsed \(wall clock\)/ { n = split($NF, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i] }
       /Maximum resident set size/ { m = $6 / 1024 }
       END { printf "%.1f %.0f\n", s, m }' "$OUT/log"
}

# Writes N synthetic 28x28 training images and 1,000 test images as IDX files into $OUT/data
# (../shared/peers/make_idx.py, with the peer venv's python or else python3, which needs numpy).
synthetic_images() {
  local py="$PY"
  [ -x "$py" ] || py=python3
  "$py" "$PEERS/make_idx.py" "$OUT/data" "$1" 1000 28 28 >/dev/null
}
