"""Two speed options measured on this machine (figures in benchmarks/RESULTS.md):

    python benchmarks/bench_speed_options.py optimizer [--models cnn_lite,eat_s]
    python benchmarks/bench_speed_options.py channels-last [--models cnn_lite,vgg_like,blocknet] [--batch 8]

optimizer: one AdamW step over a model's parameters with torch's default implementation
(a per-parameter loop on the CPU), ``foreach`` and ``fused`` (audioclf's default,
``optim.fused``), with the largest weight difference to the default after 21 steps.
channels-last: training steps (forward, cross-entropy, backward, AdamW) of a 2-D CNN with
plain and channels-last weights, alternating, clips/s per round.
"""

from __future__ import annotations

import argparse
import time

import torch

from audioclf.models import create_model


def optimizer(models: list[str]) -> None:
    for name in models:
        start = [p.detach().clone() for p in create_model(name, 10).parameters()]
        results = {}
        for label, kw in (("default", {}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
            torch.manual_seed(0)
            params = [torch.nn.Parameter(p.clone()) for p in start]
            opt = torch.optim.AdamW(params, lr=1e-3, **kw)
            for p in params:
                p.grad = torch.randn_like(p)
            opt.step()  # allocates the state
            t = time.perf_counter()
            for _ in range(20):
                opt.step()
            results[label] = ((time.perf_counter() - t) / 20, [p.detach() for p in params])
        base = results["default"][1]
        for label, (seconds, params) in results.items():
            diff = max(float((a - b).abs().max()) for a, b in zip(params, base, strict=True))
            print(f"| {name} | {label} | {seconds * 1e3:.1f} ms/step | max diff {diff:.1e} |")


def channels_last(models: list[str], batch: int, steps: int, rounds: int) -> None:
    for name in models:
        nets = {}
        for label in ("plain", "channels-last"):
            torch.manual_seed(0)
            m = create_model(name, 10).train()
            if label == "channels-last":
                m.to(memory_format=torch.channels_last)
            nets[label] = (m, torch.optim.AdamW(m.parameters(), 1e-3, fused=True))
        x = torch.randn(batch, int(nets["plain"][0].clip_samples)) * 0.1
        y = torch.randint(0, 10, (batch,))

        def step(m: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor = x, y: torch.Tensor = y) -> None:
            loss = torch.nn.functional.cross_entropy(m(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        rates: dict[str, list[float]] = {k: [] for k in nets}
        for _ in range(rounds):
            for label, (m, opt) in nets.items():
                step(m, opt)  # warm-up
                t = time.perf_counter()
                for _ in range(steps):
                    step(m, opt)
                rates[label].append(steps * batch / (time.perf_counter() - t))
        for label, r in rates.items():
            print(f"| {name} | {label} | batch {batch} | " + " / ".join(f"{v:.2f}" for v in r) + " clips/s |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=("optimizer", "channels-last"))
    p.add_argument("--models", default=None)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    if a.part == "optimizer":
        optimizer((a.models or "cnn_lite,eat_s").split(","))
    else:
        channels_last((a.models or "cnn_lite").split(","), a.batch, a.steps, a.rounds)


if __name__ == "__main__":
    main()
