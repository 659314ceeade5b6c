"""``convzoo search fbnet`` and ``convzoo search scaling``: flags generated from the search
configs (``SearchConfig``, ``ScalingSearchConfig``, and the ``TrainConfig`` fields each scaling
candidate trains with)."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from convzoo.cliutil import (
    add_command,
    add_config_flags,
    add_model_arg_flag,
    check_model_args,
    given_fields,
    parse_model_args,
)
from convzoo.nas.fbnet_search import SearchConfig
from convzoo.nas.scaling import ScalingSearchConfig
from convzoo.nas.supernet import SUPERNETS
from convzoo.train.config import TrainConfig

# TrainConfig fields a scaling candidate takes from the command line, and their defaults here
# (short runs: the search trains every candidate).
_CANDIDATE_TRAIN = {"epochs": 1, "batch_size": 64, "data": None, "device": "cpu",
                    "max_train_samples": None}  # fmt: skip


def cmd_search_fbnet(args: argparse.Namespace) -> int:
    from convzoo.nas.fbnet_search import run_search

    cfg = SearchConfig(**given_fields(args, SearchConfig))
    result = run_search(cfg)
    print("searched architecture (stage by stage):")
    for i, stage in enumerate(result["architecture"]):
        print(f"  stage {i + 1}: {' '.join(stage)}")
    print(f"latency: predicted {result['predicted_latency_ms']:.3f} ms, measured "
          f"{result['measured_latency_ms']:.3f} ms (batch {cfg.latency_batch_size}, {cfg.device})")  # fmt: skip
    args_file = Path(cfg.output) / "model_args.json"
    model_args = json.loads(args_file.read_text())
    print(f"spec: {cfg.output}/arch.json ({args_file}); train it with: "
          f"{train_command(model_args, SUPERNETS[cfg.supernet].input_size)}")  # fmt: skip
    return 0


def train_command(model_args: dict[str, Any], image_size: int) -> str:
    """The ``convzoo train`` line for a searched architecture, at the supernet's input size."""
    flags = [f"--model-arg {shlex.quote(f'{k}={v!r}')}" for k, v in model_args.items()
             if k != "num_classes"]  # fmt: skip
    return f"convzoo train fbnet_c --image-size {image_size} {' '.join(flags)}"


def cmd_search_scaling(args: argparse.Namespace) -> int:
    from convzoo.nas.scaling import run_scaling_search

    train = {k: v for k, v in _CANDIDATE_TRAIN.items() if v is not None}
    # Only the candidate flags: ScalingSearchConfig's --output is not a TrainConfig override.
    given = given_fields(args, TrainConfig)
    train.update(
        {k: v for k, v in given.items() if k in _CANDIDATE_TRAIN}, progress=False, plots=False
    )
    fields = given_fields(args, ScalingSearchConfig)
    fields["model_args"] = parse_model_args(args.model_arg)
    check_model_args(fields.get("base", ScalingSearchConfig.base), fields["model_args"])
    TrainConfig.from_dict(train)  # the candidates' settings are checked before the first one
    cfg = ScalingSearchConfig(train=train, **fields)
    result = run_scaling_search(cfg)
    print(f"{'alpha':>6} {'beta':>6} {'gamma':>6} {'res':>4} {'MMACs':>9} {'val acc %':>9}")
    for r in result["candidates"]:
        print(f"{r['alpha']:6.2f} {r['beta']:6.2f} {r['gamma']:6.2f} {r['resolution']:4d} "
              f"{r['macs'] / 1e6:9.1f} {r['val_acc']:9.2f}")  # fmt: skip
    c = result["chosen"]
    print(f"chosen: alpha={c['alpha']} beta={c['beta']} gamma={c['gamma']}; scaled up:")
    for s in result["scaled"]:
        print(f"  phi={s['phi']}: depth x{s['depth']:.3f} width x{s['width']:.3f} "
              f"res {s['resolution']} params {s['params'] / 1e6:.2f}M MACs {s['macs'] / 1e9:.3f}G")  # fmt: skip
    return 0


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    search = sub.add_parser("search", help="architecture search (FBNet DNAS, compound scaling)")
    kinds = search.add_subparsers(dest="search_kind", required=True)

    p = add_command(kinds, "fbnet", cmd_search_fbnet,
                    help="FBNet's differentiable, latency-aware search")  # fmt: skip
    add_config_flags(p, SearchConfig)

    p = add_command(kinds, "scaling", cmd_search_scaling,
                    help="EfficientNet's compound-scaling grid search")  # fmt: skip
    add_model_arg_flag(p)
    add_config_flags(p, ScalingSearchConfig)
    add_config_flags(p, TrainConfig, only=_CANDIDATE_TRAIN, defaults=_CANDIDATE_TRAIN,
                     title="training of each candidate (TrainConfig fields)")  # fmt: skip
