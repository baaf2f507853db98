#!/usr/bin/env python3
"""The peer's MLP trials trained again by nas, one configuration at a time: is nas's trainer as
good as PyTorch's on the very networks and hyper-parameters, apart from the sampler?

usage: paired_configs.py PEER_JSON NAS SEED [WORKDIR]

PEER_JSON is a result of ../shared/peers/search.py --family mlp (benches/compare_peer.sh --keep
DIR leaves them as DIR/peer<seed>.json). Each of its trials is written as a fixed space in the
architecture language (Linear, BatchNorm when on, the activation and dropout per hidden layer,
the same optimiser, learning rate, momentum, batch size and weight decay; 40 epochs at most,
patience 5, 3 folds: the peer's protocol) and searched with `NAS search --trials 1 --seed SEED`
on digits. Prints each trial's cross-validated accuracy for both engines and their difference,
then the mean and median difference and how often nas is higher.

The two engines split the training data into folds differently (nas by SEED, the peer by its
own seed), so every trial of one run shares one fold partition per engine; that alone moves
every difference of a run by the same amount (0.002-0.004 on digits). Compare several seeds,
passing the peer's seed as SEED. Needs no torch: any python 3 runs it.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile


def fixed_space(p: dict) -> str:
    """The peer's MLP parameters (search.py's `suggest`) as one fixed nas space."""
    act = p["activation"].capitalize()
    layers = []
    for i in range(p["n_layers"]):
        layers.append(f"Linear(units: {p[f'width_l{i}']})")
        if p["batchnorm"]:
            layers.append("BatchNorm")
        layers.append(f"Act(function: {act})")
        if p["dropout"] > 0:
            layers.append(f"Dropout(rate: {p['dropout']!r})")
    opt = p["optimizer"].capitalize()
    momentum = f"momentum: Fixed({p['momentum']!r}), " if opt == "Sgd" else ""
    return (
        f"(task: Classification, model: Sequential([{', '.join(layers)}]),\n"
        f" train: (optimizer: Fixed({opt}), learning_rate: Fixed({p['lr']!r}), {momentum}"
        f"batch_size: Fixed({p['batch_size']}), weight_decay: Fixed({p['weight_decay']!r}), "
        f"max_epochs: Fixed(40), patience: Fixed(5)))\n"
    )


def main() -> int:
    if len(sys.argv) < 4:
        print(next(l for l in __doc__.splitlines() if l.startswith("usage")), file=sys.stderr)
        return 2
    peer, nas, seed = sys.argv[1], sys.argv[2], sys.argv[3]
    work = sys.argv[4] if len(sys.argv) > 4 else tempfile.mkdtemp(prefix="nas-paired-")
    os.makedirs(work, exist_ok=True)
    r = json.load(open(peer))
    if r.get("args", {}).get("family", "mlp") != "mlp":
        print(f"{peer}: only MLP results can be replayed", file=sys.stderr)
        return 2
    diffs = []
    for t in r["trials_detail"]:
        if t.get("value") is None:
            continue
        n = t["number"]
        space = os.path.join(work, f"t{n}.ron")
        with open(space, "w") as f:
            f.write(fixed_space(t["params"]))
        results = os.path.join(work, f"r{n}")
        subprocess.run(["rm", "-rf", results], check=True)
        run = subprocess.run(
            [nas, "search", "--space", space, "--data", "digits", "--trials", "1",
             "--workers", "1", "--seed", seed, "--results", results, "--study", "a",
             "--quiet", "--no-final"],
            capture_output=True, text=True)
        if run.returncode != 0:
            print(f"trial {n}: nas failed: {run.stderr.strip()[-300:]}")
            continue
        board = subprocess.run(
            [nas, "leaderboard", "--results", results, "--study", "a", "--format", "json"],
            capture_output=True, text=True, check=True)
        cv = json.loads(board.stdout)[0]["cv_mean"]
        diffs.append(cv - t["value"])
        print(f"{n:3d} {t['architecture']:34s} {t['params']['optimizer']:4s} "
              f"lr {t['params']['lr']:.2e} batch {t['params']['batch_size']:3d} | "
              f"peer {t['value']:.4f} nas {cv:.4f} {cv - t['value']:+.4f}", flush=True)
    if diffs:
        print(f"nas - peer over {len(diffs)} trials: mean {statistics.mean(diffs):+.4f}, "
              f"median {statistics.median(diffs):+.4f}; nas higher in {sum(d > 0 for d in diffs)}, "
              f"equal in {sum(d == 0 for d in diffs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
