"""Next-frame prediction on procedural moving digits: dynamic filters against their baselines.

Trains every contender with the same data, steps, batch order and optimiser, once per seed (the
seed sets the initial weights and the mini-batch order; the data are fixed: training sequences
drawn with seed 0, test sequences with seed 1), and reports the test binary cross-entropy per
pixel (the paper's loss) and mean squared error as mean and sample standard deviation over seeds.
The contenders:

* ``dfn_video_moving_digits``: the paper's model as released (a recurrent conv encoder-decoder
  generating per-pixel filters), and the release's baseline (``filtering="none"``: the same
  network drawing the frame), both at reduced width so that the run fits a CPU;
* ``dfn_local_moving_digits`` / ``dfn_conv_moving_digits``: our feed-forward generators with
  per-pixel or per-sample filters, and their same-size plain conv baseline;
* "copy the last frame", the trivial reference.

Every row is labelled with the exact ``create_model`` call that built it.

    PYTHONPATH=src python benchmarks/dynamic_filter_prediction.py --seeds 0 --json seed0.json
    PYTHONPATH=src python benchmarks/dynamic_filter_prediction.py --merge seed0.json seed1.json ...
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import convzoo
from convzoo.data.moving_digits import MovingDigitsConfig, moving_digits


@dataclass(frozen=True)
class Contender:
    label: str
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def call(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.overrides.items())
        return f'create_model("{self.name}"{args})'


def contenders(filter_size: int, widths: tuple[int, int], video_scale: int) -> list[Contender]:
    def v(c: int) -> int:
        return max(1, c // video_scale)

    video = {
        "encoder_widths": (v(32), v(32), v(64), v(64)),
        "hidden_width": v(128),
        "decoder_widths": (v(64),) * 4,
        "head_width": v(128),
        "filter_size": filter_size,
    }
    ff = {"widths": widths, "filter_size": filter_size}
    return [
        Contender("paper's video DFN (release layout)", "dfn_video_moving_digits", video),
        Contender(
            "release's video baseline", "dfn_video_moving_digits", {**video, "filtering": "none"}
        ),
        Contender("feed-forward, per-pixel filters", "dfn_local_moving_digits", ff),
        Contender("feed-forward, one filter per sample", "dfn_conv_moving_digits", ff),
        Contender(
            "feed-forward plain conv baseline",
            "dfn_local_moving_digits",
            {**ff, "filtering": "none"},
        ),
    ]


def evaluate(
    predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, batch: int
) -> tuple[float, float]:
    bce = mse = 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            pred = predict(x[i : i + batch]).clamp(1e-6, 1 - 1e-6)
            bce += F.binary_cross_entropy(pred, y[i : i + batch], reduction="sum").item()
            mse += F.mse_loss(pred, y[i : i + batch], reduction="sum").item()
    n = y.numel()
    return bce / n, mse / n


def train_one(
    c: Contender, seed: int, data: tuple[torch.Tensor, ...], args: argparse.Namespace
) -> dict[str, float]:
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(seed)
    model = convzoo.create_model(c.name, **c.overrides).to(x_train.device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    model.train()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        idx = torch.randint(0, x_train.shape[0], (args.batch_size,), generator=gen)
        idx = idx.to(x_train.device)
        pred = model(x_train[idx]).clamp(1e-6, 1 - 1e-6)
        loss = F.binary_cross_entropy(pred, y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    bce, mse = evaluate(model.eval(), x_test, y_test, 256)
    params = sum(q.numel() for q in model.parameters())
    return {"bce": bce, "mse": mse, "seconds": seconds, "params": params}


def spread(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-sequences", type=int, default=2000)
    p.add_argument("--test-sequences", type=int, default=500)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--digit-scale", type=int, default=2)
    p.add_argument("--num-digits", type=int, default=2)
    p.add_argument("--max-speed", type=int, default=2)
    p.add_argument("--context-frames", type=int, default=3)
    p.add_argument("--filter-size", type=int, default=5, help="must cover 2 * max_speed + 1")
    p.add_argument("--widths", type=int, nargs=2, default=[16, 32], help="feed-forward models")
    p.add_argument("--video-scale", type=int, default=4, help="divide the release's widths by")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="the release's Adam rate")
    p.add_argument("--json", type=Path, help="also write per-seed results here")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--merge", type=Path, nargs="+", help="only print one table over these --json files"
    )
    args = p.parse_args()
    if args.merge:
        runs = []
        for path in args.merge:
            try:
                runs.append(json.loads(path.read_text()))
            except (OSError, ValueError) as e:
                p.error(f"--merge: cannot read {path}: {e}")
        report(runs)
        return
    if args.filter_size < 2 * args.max_speed + 1:
        p.error(f"--filter-size {args.filter_size} cannot follow a {args.max_speed}px/frame move")
    dev = torch.device(args.device)

    def frames(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = MovingDigitsConfig(
            num_sequences=n,
            num_frames=args.context_frames + 1,
            image_size=args.image_size,
            digit_scale=args.digit_scale,
            num_digits=args.num_digits,
            max_speed=args.max_speed,
            seed=seed,
        )
        video = moving_digits(cfg).to(dev)
        return video[:, :-1], video[:, -1:]  # context frames -> the next one

    data = (*frames(args.train_sequences, 0), *frames(args.test_sequences, 1))
    setup = (
        f"{args.train_sequences} training / {args.test_sequences} test sequences, "
        f"{args.image_size}px, {args.num_digits} digits of {8 * args.digit_scale}px, speed <= "
        f"{args.max_speed}px/frame, {args.context_frames} frames in, the next predicted; "
        f"{args.steps} Adam steps of {args.batch_size} at lr {args.lr}; seeds {args.seeds}; "
        f"device {dev}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    )
    print(setup + "\n")
    results: dict[str, list[dict[str, float]]] = {}
    cs = [c for c in contenders(args.filter_size, tuple(args.widths), args.video_scale)]
    for seed in args.seeds:  # seeds outermost, so load drifts hit every contender alike
        for c in cs:
            r = train_one(c, seed, data, args)
            results.setdefault(c.call(), []).append(r)
            print(
                f"seed {seed} {c.label}: BCE {r['bce']:.4f} ({r['seconds']:.0f} s)", file=sys.stderr
            )
    copy_bce, copy_mse = evaluate(lambda v: v[:, -1:], data[2], data[3], 256)
    payload = {
        "setup": setup,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "labels": {c.call(): c.label for c in cs},
        "copy_last_frame": {"bce": copy_bce, "mse": copy_mse},
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2))
    report([payload])


def report(runs: list[dict[str, Any]]) -> None:
    """One markdown table over the runs (one per seed or several), which must match but in seeds."""
    same = [{k: v for k, v in r["args"].items() if k not in ("seeds", "json")} for r in runs]
    if any(a != same[0] for a in same):
        sys.exit("--merge: the runs differ in more than their seeds")
    for r in runs:
        print(r["setup"])
    copy = runs[0]["copy_last_frame"]
    print(
        "\n| contender | exactly what ran | params | test BCE / pixel | test MSE / pixel | s / run |"
    )
    print("|---|---|---:|---:|---:|---:|")
    print(f"| copy the last frame | - | 0 | {copy['bce']:.4f} | {copy['mse']:.5f} | 0 |")
    for call, label in runs[0]["labels"].items():
        rs = [x for r in runs for x in r["results"][call]]
        bce, bce_sd = spread([r["bce"] for r in rs])
        mse, mse_sd = spread([r["mse"] for r in rs])
        secs = statistics.mean(r["seconds"] for r in rs)
        print(
            f"| {label} | `{call}` | {rs[0]['params']:,} | {bce:.4f} ± {bce_sd:.4f} | "
            f"{mse:.5f} ± {mse_sd:.5f} | {secs:.0f} |"
        )
    print(f"\n{sum(len(r['args']['seeds']) for r in runs)} seeds; ± is the sample std over seeds.")


if __name__ == "__main__":
    main()
