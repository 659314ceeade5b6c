"""Are a PolyNet checkpoint's BatchNorm running statistics what its weights need in eval mode?

Written for ``polynet_cifar`` as it was before 2026-12-03, whose poly modules shared one
BatchNorm set between the applications of F (x, F(x), F(F(x)) normalized by the same running
statistics; BENCHMARKS.md section 5). For a training checkpoint it prints the validation top-1
(the run's held-out split) of the same weights evaluated four ways:

* eval mode with the checkpoint's running statistics (what training reported);
* batch statistics (training-mode BatchNorm, running statistics untouched, shuffled batches);
* per-application running statistics: the weights copied into the network with a BatchNorm set
  and projection per application (``share_norm=False, share_projection=False``, application i
  starting from the shared ones), statistics re-estimated on ``--calib-batches`` training batches;
* the shared network's running statistics re-estimated the same way (the control).

    OMP_NUM_THREADS=1 python benchmarks/bn_statistics.py RUN/last.pt \\
        --model-args '{"share_norm": true, "share_projection": true}'

``--model-args`` replaces the checkpoint's recorded model arguments: a checkpoint of the old
``polynet_cifar`` recorded none, and today's defaults build the per-application network.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from convzoo.data.device_loader import DeviceLoader
from convzoo.registry import create_model
from convzoo.train.checkpoint import check_training_checkpoint, load_checkpoint
from convzoo.train.config import TrainConfig
from convzoo.train.engine import build_model
from convzoo.train.state import load_weights, run_splits

Batches = Iterable[tuple[Tensor, Tensor]]


def per_application(model: nn.Module, name: str, model_args: dict[str, Any]) -> nn.Module:
    """``name`` built with a BatchNorm set and projection per application of F, every application
    starting from ``model``'s shared ones (``norms.i`` <- ``norms.0``, ``projections.i`` <-
    ``projections.0``): in training mode it computes exactly what ``model`` computes."""
    args = {**model_args, "share_norm": False, "share_projection": False}
    out = create_model(name, **args)
    src = model.state_dict()
    state = {}
    for key in out.state_dict():
        shared = re.sub(
            r"projections\.\d+\.", "projections.0.", re.sub(r"norms\.\d+\.", "norms.0.", key)
        )
        state[key] = src[shared].clone()
    out.load_state_dict(state)
    return out


def shares_norms(state: dict[str, Tensor]) -> bool:
    """Whether a PolyNet state dict has poly units whose applications share one BatchNorm set
    (``norms.0`` only); a per-application build has ``norms.1`` onwards, trained separately."""
    keys = list(state)
    return any(".norms.0." in k for k in keys) and not any(
        re.search(r"\.norms\.[1-9]\d*\.", k) for k in keys
    )


def reestimate(model: nn.Module, batches: Batches, limit: int) -> nn.Module:
    """Running statistics replaced by the cumulative average over ``limit`` batches."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for i, (x, _) in enumerate(batches):
            if i >= limit:
                break
            model(x)
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, batches: Batches, *, batch_stats: bool = False) -> float:
    """Top-1 %; ``batch_stats``: BatchNorm normalizes by each batch's own statistics (training
    mode with momentum 0, so the running statistics stay as they are; dropout off)."""
    saved = {}
    if batch_stats:
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                saved[m] = m.momentum
                m.momentum = 0.0
            elif isinstance(m, nn.Dropout):
                m.eval()
    else:
        model.eval()
    correct = seen = 0
    for x, y in batches:
        correct += int((model(x).argmax(1) == y).sum())
        seen += len(y)
    for m, momentum in saved.items():
        m.momentum = momentum
    model.eval()
    return 100.0 * correct / max(seen, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="a convzoo train checkpoint (RUN/last.pt)")
    p.add_argument("--data", help="the image folder (default: the run's)")
    p.add_argument("--model-args", default=None, help="JSON replacing the recorded model args")
    p.add_argument("--calib-batches", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0, help="the order of the shuffled batches")
    args = p.parse_args(argv)
    if not args.checkpoint.is_file():
        p.error(f"{args.checkpoint}: no such file")
    if args.calib_batches < 1 or args.batch_size < 2:
        p.error("--calib-batches must be >= 1 and --batch-size >= 2")
    try:
        overrides = json.loads(args.model_args) if args.model_args is not None else None
    except json.JSONDecodeError as err:
        p.error(f"--model-args: not JSON ({err})")
    if overrides is not None and not isinstance(overrides, dict):
        p.error("--model-args: expected a JSON object")

    ckpt = load_checkpoint(args.checkpoint)
    check_training_checkpoint(ckpt, args.checkpoint)
    config = dict(ckpt["config"])
    if overrides is not None:
        config["model_args"] = overrides
    cfg = TrainConfig.from_dict(config)
    model = build_model(cfg, len(ckpt["classes"]), fresh=False)
    load_weights(model, ckpt["model"], args.checkpoint)
    splits = run_splits(cfg, ckpt["image_size"], data=args.data, split="train")
    cpu = torch.device("cpu")

    def loader(ds: Any, seed: int) -> DeviceLoader:
        return DeviceLoader(ds, args.batch_size, device=cpu, mean=ckpt["mean"], std=ckpt["std"],
                            shuffle=True, seed=seed)  # fmt: skip

    val, train = loader(splits.val, args.seed), loader(splits.train, args.seed + 1)
    rows = [("eval mode, the checkpoint's running statistics", accuracy(model, val)),
            ("batch statistics", accuracy(model, val, batch_stats=True))]  # fmt: skip
    if shares_norms(ckpt["model"]):  # a per-application build has nothing to copy
        unshared = per_application(model, cfg.model, dict(cfg.model_args))
        reestimate(unshared, train, args.calib_batches)
        rows.append((f"per-application statistics, re-estimated on {args.calib_batches} batches",
                     accuracy(unshared, val)))  # fmt: skip
    control = reestimate(model, train, args.calib_batches)
    rows.append((f"the model's own statistics, re-estimated on {args.calib_batches} batches",
                 accuracy(control, val)))  # fmt: skip
    print(f"{args.checkpoint} ({cfg.model}, model args {dict(cfg.model_args)}), "
          f"{len(splits.val)} validation images:")  # fmt: skip
    for label, acc in rows:
        print(f"  {acc:6.2f}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
