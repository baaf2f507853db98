#!/usr/bin/env python3
"""How much training each engine did in one side-by-side search, and how fast.

usage: search_work.py PEER_JSON NAS RESULTS STUDY

Prints one line: "peer_tflop nas_tflop" (training only: 6 FLOPs per multiply-add of a forward
pass, forward and backward, times the epochs trained over all folds, times the training samples
of a fold). The two searches pick different networks (their TPE samplers start from different
random trials), so wall time alone mixes the engines' speed with the sampler's luck; work done
per second of wall time separates the two. Multiply-adds: the peer's from its own model code
(../shared/peers/search.py's build_model, imported, counted with forward hooks on one sample);
nas's from `nas trial N --format json` (cost.macs, cost.epochs_trained). Run with the peer's
python (torch). benches/compare_peer.sh calls it after each seed.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

PEERS = Path(__file__).resolve().parent.parent.parent / "shared" / "peers"
FLOPS_PER_MAC = 6  # forward 2, backward 4 (input and weight gradients)


def peer_macs(p: dict, family: str, in_shape: tuple, n_out: int) -> int:
    import search as S
    import torch
    import torch.nn as nn

    model = S.build_model(p, family, in_shape, n_out)
    total = [0]

    def hook(mod, _inp, out):
        if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
            k = 1
            for d in mod.kernel_size:
                k *= d
            total[0] += out.numel() * mod.in_channels // mod.groups * k
        elif isinstance(mod, nn.Linear):
            total[0] += mod.in_features * mod.out_features

    for mod in model.modules():
        mod.register_forward_hook(hook)
    model.eval()
    with torch.inference_mode():
        model(torch.zeros(1, *in_shape))
    return total[0]


def main() -> None:
    peer_json, nas, results, study = sys.argv[1:5]
    sys.path.insert(0, str(PEERS))
    r = json.load(open(peer_json))
    d, proto = r["data"], r["protocol"]
    family = r["args"]["family"]
    k = proto["folds"]
    fold_train = d["n_train"] * (k - 1) / k if k > 1 else d["n_train"] * 0.8
    n_out = d.get("n_classes") or 1
    shape = tuple(d["model_input_shape"]) if family == "cnn" else (math.prod(d["sample_shape"]),)
    peer = sum(
        peer_macs(t["params"], family, shape, n_out) * t.get("epochs", 0)
        for t in r["trials_detail"]
        if t.get("params")
    )
    board = json.loads(subprocess.run(
        [nas, "leaderboard", "--results", results, "--study", study, "--format", "json"],
        check=True, capture_output=True, text=True).stdout)
    ours = 0
    for row in board:
        t = json.loads(subprocess.run(
            [nas, "trial", str(row["trial"]), "--results", results, "--study", study, "--format", "json"],
            check=True, capture_output=True, text=True).stdout)
        ours += t["cost"]["macs"] * t["cost"].get("epochs_trained", 0)
    scale = FLOPS_PER_MAC * fold_train / 1e12
    print(f"{peer * scale:.4g} {ours * scale:.4g}")


if __name__ == "__main__":
    main()
