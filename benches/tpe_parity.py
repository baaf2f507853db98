#!/usr/bin/env python3
"""Does nas's TPE suggest what Optuna's does, given the same history?

usage: tpe_parity.py NAS_EXAMPLE DRAWS PEER_JSON...

For each PEER_JSON (a CNN result of ../shared/peers/search.py; benches/compare_peer.sh --keep DIR
leaves them as DIR/peer<seed>.json), both samplers are given the peer's first 10 trials (its
random start-up, with their scores) and asked DRAWS times for the 11th, each time with a fresh
seed: Optuna's TPESampler as search.py builds it (Optuna 5's defaults: multivariate), and nas's
default TPE through NAS_EXAMPLE (target/release/examples/tpe_parity, `cargo build --release
--example tpe_parity`), which writes the same trials into benches/spaces/peer_cnn.ron. Prints, per
history and over all, how often each engine suggests each stem width and block type, and the
median multiply-adds per sample of the suggested networks (the peer's own model code, counted as
benches/search_work.py counts them). Run with the peer's python (torch and optuna), from the
checkout.
"""
import collections
import json
import statistics
import subprocess
import sys
from pathlib import Path

PEERS = Path(__file__).resolve().parent.parent.parent / "shared" / "peers"


def optuna_draws(peer: dict, draws: int) -> list:
    import optuna
    import search as S

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    history = [t for t in peer["trials_detail"] if t["number"] < 10]
    out = []
    for k in range(draws):
        study = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=1000 + k, n_startup_trials=10))
        for t in history:
            study.enqueue_trial(t["params"])
            trial = study.ask()
            S.suggest(trial, "cnn")
            study.tell(trial, t["value"])
        out.append(S.suggest(study.ask(), "cnn"))
    return out


def nas_draws(example: str, peer_file: str, draws: int) -> list:
    run = subprocess.run([example, peer_file, str(draws)], capture_output=True, text=True,
                         check=True)
    return [json.loads(line) for line in run.stdout.splitlines()]


def summary(draws: list, macs) -> dict:
    n = len(draws)
    widths = collections.Counter(d["channels_s0"] for d in draws)
    blocks = collections.Counter(d["block_type"] for d in draws)
    return {
        "stem 16/32/64": "/".join(f"{widths[w] / n:.2f}" for w in (16, 32, 64)),
        "plain/residual/separable": "/".join(
            f"{blocks[b] / n:.2f}" for b in ("plain", "residual", "separable")),
        "median MACs": f"{statistics.median(macs(d) for d in draws) / 1e6:.2f}M",
    }


def main() -> int:
    if len(sys.argv) < 4:
        print(next(l for l in __doc__.splitlines() if l.startswith("usage")), file=sys.stderr)
        return 2
    example, draws, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    sys.path.insert(0, str(PEERS))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import search_work as W

    peers = {f: json.load(open(f)) for f in files}
    # Every history is a search of the same data (benches/compare_peer.sh runs digits).
    data = next(iter(peers.values()))["data"]
    shape, n_out = tuple(data["model_input_shape"]), data["n_classes"]
    cache = {}

    def macs(p: dict) -> int:
        key = json.dumps(p, sort_keys=True)
        if key not in cache:
            cache[key] = W.peer_macs(p, "cnn", shape, n_out)
        return cache[key]

    def row(history: str, engine: str, got: list) -> None:
        s = summary(got, macs)
        print(f"| {history} | {engine} | {s['stem 16/32/64']} | "
              f"{s['plain/residual/separable']} | {s['median MACs']} |", flush=True)

    everything = {"Optuna": [], "nas": []}
    print("| history | engine | stem 16/32/64 | plain/residual/separable | median MACs |")
    print("|---|---|---|---|---:|")
    for f, peer in peers.items():
        for engine, got in (("Optuna", optuna_draws(peer, draws)),
                            ("nas", nas_draws(example, f, draws))):
            everything[engine] += got
            row(Path(f).name, engine, got)
    for engine, got in everything.items():
        row("all", engine, got)
    return 0


if __name__ == "__main__":
    sys.exit(main())
