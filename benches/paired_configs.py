#!/usr/bin/env python3
"""The peer's trials trained again by nas, one configuration at a time: is nas's trainer as good
as PyTorch's on the very networks and hyper-parameters, apart from the sampler?

usage: paired_configs.py PEER_JSON NAS SEED [WORKDIR]

PEER_JSON is a result of ../shared/peers/search.py --family mlp or cnn (benches/compare_peer.sh
--keep DIR leaves them as DIR/peer<seed>.json). Each of its trials is written as a fixed space in
the architecture language and searched with `NAS search --trials 1 --seed SEED` on digits, with
the peer's protocol (its max_epochs, patience 5, 3 folds):
- MLP: Linear, BatchNorm when on, the activation and dropout per hidden layer;
- CNN: the stem, then per stage its blocks (plain, residual or separable, as
  benches/spaces/peer_cnn.ron writes them) behind the downsampling, global average pooling and
  dropout (search.py's build_model);
- both: the same optimiser, learning rate, momentum, batch size and weight decay.
Prints each trial's cross-validated accuracy for both engines and their difference, then the
mean and median difference and how often nas is higher. Trials run JOBS at a time (default: the
cores), one thread each.

The two engines split the training data into folds differently (nas by SEED, the peer by its
own seed), so every trial of one run shares one fold partition per engine; that alone moves
every difference of a run by the same amount (0.002-0.004 on digits). Compare several seeds,
passing the peer's seed as SEED. The peer's best trials are its luckiest draws too: replayed
anywhere they score lower on average, so compare over all trials above a threshold, not the
best alone. Needs no torch: any python 3 runs it.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor


def fixed_space(p: dict, max_epochs: int) -> str:
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
    return (f"(task: Classification, model: Sequential([{', '.join(layers)}]),\n"
            + train_section(p, max_epochs))


def fixed_cnn_space(p: dict, max_epochs: int) -> str:
    """The peer's CNN parameters (search.py's `build_model`) as one fixed nas space, written the
    way benches/spaces/peer_cnn.ron writes each block."""
    k, act = p["kernel"], p["activation"].capitalize()
    bn = "true" if p["batchnorm"] else "false"

    def conv(ch):
        return f"Conv(channels: {ch}, kernel: {k})" if ch else f"Conv(kernel: {k})"

    def block(kind, ch):
        if kind == "plain":
            return f"{conv(ch)}, BatchNorm(enabled: {bn}), Act({act})"
        if kind == "residual":
            return (f"Residual(Sequential([{conv(ch)}, BatchNorm(enabled: {bn}), Act({act}), "
                    f"{conv(None)}, BatchNorm(enabled: {bn})])), Act({act})")
        chs = f"channels: {ch}, " if ch else ""
        return f"SeparableConv({chs}kernel: {k}, activation: {act}, batch_norm: {bn})"

    layers = [block("plain", p["channels_s0"])]  # the stem
    how = "MaxPool" if p["downsample"] == "maxpool" else "Stride"
    for s in range(p["n_stages"]):
        for b in range(p[f"blocks_s{s}"]):
            first = s > 0 and b == 0
            if first:
                layers.append(f"Downsample(how: {how}, ceil: true)")
            layers.append(block(p["block_type"], p[f"channels_s{s}"] if first else None))
    layers.append("GlobalAvgPool")
    if p["dropout"] > 0:
        layers.append(f"Dropout({p['dropout']!r})")
    return (f"(task: Classification, model: Sequential([{', '.join(layers)}]),\n"
            + train_section(p, max_epochs))


def train_section(p: dict, max_epochs: int) -> str:
    """The peer's optimiser settings, `max_epochs` at most, patience 5."""
    opt = p["optimizer"].capitalize()
    momentum = f"momentum: Fixed({p['momentum']!r}), " if opt == "Sgd" else ""
    return (
        f" train: (optimizer: Fixed({opt}), learning_rate: Fixed({p['lr']!r}), {momentum}"
        f"batch_size: Fixed({p['batch_size']}), weight_decay: Fixed({p['weight_decay']!r}), "
        f"max_epochs: Fixed({max_epochs}), patience: Fixed(5)))\n"
    )


def replay(nas: str, seed: str, work: str, family: str, max_epochs: int, t: dict):
    """Trains one peer trial again in nas; returns its line and nas's CV (None on failure)."""
    n = t["number"]
    space = os.path.join(work, f"t{n}.ron")
    with open(space, "w") as f:
        f.write(SPACES[family](t["params"], max_epochs))
    results = os.path.join(work, f"r{n}")
    subprocess.run(["rm", "-rf", results], check=True)
    run = subprocess.run(
        [nas, "search", "--space", space, "--data", "digits", "--trials", "1",
         "--workers", "1", "--threads-per-trial", "1", "--seed", seed, "--results", results,
         "--study", "a", "--quiet", "--no-final"],
        capture_output=True, text=True)
    if run.returncode != 0:
        return f"trial {n}: nas failed: {run.stderr.strip()[-300:]}", None
    board = subprocess.run(
        [nas, "leaderboard", "--results", results, "--study", "a", "--format", "json"],
        capture_output=True, text=True, check=True)
    cv = json.loads(board.stdout)[0]["cv_mean"]
    line = (f"{n:3d} {t['architecture'][:44]:44s} {t['params']['optimizer']:4s} "
            f"lr {t['params']['lr']:.2e} batch {t['params']['batch_size']:3d} | "
            f"peer {t['value']:.4f} nas {cv:.4f} {cv - t['value']:+.4f}")
    return line, cv


SPACES = {"mlp": fixed_space, "cnn": fixed_cnn_space}


def main() -> int:
    if len(sys.argv) < 4:
        print(next(l for l in __doc__.splitlines() if l.startswith("usage")), file=sys.stderr)
        return 2
    peer, nas, seed = sys.argv[1], sys.argv[2], sys.argv[3]
    work = sys.argv[4] if len(sys.argv) > 4 else tempfile.mkdtemp(prefix="nas-paired-")
    os.makedirs(work, exist_ok=True)
    r = json.load(open(peer))
    family = r.get("args", {}).get("family", "mlp")
    if family not in SPACES:
        print(f"{peer}: only MLP and CNN results can be replayed", file=sys.stderr)
        return 2
    max_epochs = r.get("protocol", {}).get("max_epochs") or 40
    trials = [t for t in r["trials_detail"] if t.get("value") is not None]
    jobs = int(os.environ.get("JOBS", os.cpu_count() or 1))
    diffs = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for t, (line, cv) in zip(trials, pool.map(
                lambda t: replay(nas, seed, work, family, max_epochs, t), trials)):
            print(line, flush=True)
            if cv is not None:
                diffs.append(cv - t["value"])
    if diffs:
        print(f"nas - peer over {len(diffs)} trials: mean {statistics.mean(diffs):+.4f}, "
              f"median {statistics.median(diffs):+.4f}; nas higher in {sum(d > 0 for d in diffs)}, "
              f"equal in {sum(d == 0 for d in diffs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
