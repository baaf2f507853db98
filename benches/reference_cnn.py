"""Reference CNN training throughput in PyTorch (one thread), for benches/cnn_throughput.rs.

Model: 1x28x28 -> conv3x3(16, pad 1) relu maxpool2 -> conv3x3(32, pad 1) relu maxpool2
-> dense 10, softmax cross-entropy, Adam, batch 64, random data.
Prints `pytorch_samples_per_sec=<float>` as its last line.
"""

import argparse
import time

import torch
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    batches = [
        (torch.randn(args.batch, 1, 28, 28), torch.randint(0, 10, (args.batch,)))
        for _ in range(8)
    ]

    def step(i: int) -> None:
        x, y = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for i in range(10):
        step(i)
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        step(steps)
        steps += 1
    elapsed = time.perf_counter() - start
    print(f"pytorch_samples_per_sec={steps * args.batch / elapsed:.1f}")


if __name__ == "__main__":
    main()
