"""``convzoo train / eval / predict``. Every TrainConfig field is a flag (``--batch-size``, ...);
only flags given on the command line override the recipe (or, with --resume, the run's config)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from convzoo.cliutil import (
    UsageError,
    add_command,
    add_config_flags,
    add_model_arg_flag,
    check_model_args,
    checked,
    given_fields,
    parse_device,
    parse_model_args,
    resolve_device,
)
from convzoo.train.config import TrainConfig, list_recipes, load_recipe

# Fields with their own spelling on the command line.
_SPECIAL = ("model", "model_args", "data", "output")


def cmd_train(args: argparse.Namespace) -> int:
    from convzoo.train.checkpoint import find_resume, load_checkpoint
    from convzoo.train.engine import TrainingDiverged, train

    overrides = {k: v for k, v in given_fields(args, TrainConfig).items() if k not in _SPECIAL}
    if args.model_arg:
        overrides["model_args"] = parse_model_args(args.model_arg)
    for key in ("data", "output"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.model is not None:
        overrides["model"] = args.model
    if args.resume:
        if not isinstance(args.resume, str) and args.output is None:
            raise UsageError("--resume needs the run directory: --resume DIR or --output DIR")
        where = Path(args.resume if isinstance(args.resume, str) else args.output)
        path = find_resume(where) if where.is_dir() else where
        if path is None:
            raise FileNotFoundError(f"nothing to resume in {where}: no last.pt or prev.pt")
        base = load_checkpoint(path)["config"]
        cfg = TrainConfig.from_dict({**base, **overrides})
        resume: Any = path
    else:
        if args.model is None:
            raise UsageError("convzoo train needs a MODEL (see convzoo list) or --resume DIR")
        base = load_recipe(args.recipe) if args.recipe else {}
        overrides.setdefault(
            "output", f"runs/{args.model}" + (f"-{args.recipe}" if args.recipe else "")
        )
        cfg = TrainConfig.from_dict({**base, **overrides})
        if find_resume(cfg.output) is not None:
            raise UsageError(f"{cfg.output} already holds a run: continue it with --resume "
                             f"{cfg.output}, or choose another --output")  # fmt: skip
        resume = False
    check_model_args(cfg.model, cfg.model_args)
    try:
        final = train(cfg, resume=resume)
    except TrainingDiverged as err:
        print(f"convzoo train: {err}", file=sys.stderr)
        return 3
    if final and os.environ.get("RANK", "0") == "0":  # once under torchrun
        print(f"final: val top-1 {final.get('val_acc', float('nan')):.2f}%  "
              f"top-5 {final.get('val_top5', float('nan')):.2f}%  -> {cfg.output}")  # fmt: skip
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from convzoo.train.inference import eval_checkpoint

    r = eval_checkpoint(args.checkpoint, args.data, split=args.split, weights=args.weights,
                        batch_size=args.batch_size, device=args.device, output=args.output,
                        model_name=args.model)  # fmt: skip
    print(f"{r['n']} images ({r['weights']} weights): top-1 {r['acc']:.2f}%  top-5 {r['top5']:.2f}%  "
          f"loss {r['loss']:.4f}")  # fmt: skip
    for name, acc in zip(r["classes"], r["per_class"]):
        print(f"  {name:24s} {acc:6.2f}%")
    print(f"confusion matrix: {r['confusion_png']}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from convzoo.train.inference import predict_images

    if args.pretrained is not None:
        from convzoo.pretrained import parse_pretrained, predict
        from convzoo.registry import create_model

        if args.model is None or args.checkpoint is not None:
            raise UsageError("--pretrained takes --model NAME and no --checkpoint")
        model = create_model(args.model, pretrained=parse_pretrained(args.pretrained))
        results = predict(model.to(resolve_device(args.device)), args.images, args.top_k)
    elif args.checkpoint is None:
        raise UsageError("predict needs --checkpoint PATH, or --model NAME --pretrained [SOURCE]")
    else:
        results = predict_images(args.images, args.checkpoint, top_k=args.top_k,
                                 weights=args.weights, device=args.device)  # fmt: skip
    for path, top in zip(args.images, results):
        print(path)
        for name, prob in top:
            print(f"  {prob * 100:6.2f}%  {name}")
    return 0


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    p = add_command(sub, "train", cmd_train, help="train a model (embedded digits when no --data)",
                    description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("model", nargs="?", default=None, help="registered model name")
    p.add_argument("--recipe", help=f"recipe name ({', '.join(list_recipes())}) or JSON file")
    p.add_argument("--data", default=None, help="data directory; default: embedded digits")
    p.add_argument("--output", default=None, help="run directory (default runs/MODEL[-RECIPE])")
    p.add_argument("--resume", nargs="?", const=True, default=False,
                   help="continue the run in --output, or in the given directory / checkpoint")  # fmt: skip
    add_model_arg_flag(p)
    add_config_flags(p, TrainConfig, skip=_SPECIAL,
                     title="TrainConfig fields (override the recipe; 'none' clears one)")  # fmt: skip

    p = add_command(sub, "eval", cmd_eval,
                    help="accuracy, top-5, per-class and confusion matrix of a checkpoint")  # fmt: skip
    p.add_argument(
        "model", nargs="?", default=None, help="model name (checked against the checkpoint)"
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default=None, help="default: the run's data")
    p.add_argument("--split", choices=("val", "test"), default="val",
                   help="val: the run's held-out split; test: CIFAR's test batches")  # fmt: skip
    p.add_argument("--weights", choices=("auto", "model", "ema"), default="auto")
    p.add_argument("--batch-size", type=checked(int, low=1), default=256)
    p.add_argument("--device", type=parse_device, default="auto")
    p.add_argument("--output", default=None, help="where confusion.png goes")

    p = add_command(sub, "predict", cmd_predict,
                    help="top-k classes with probabilities for image files")  # fmt: skip
    p.add_argument("images", nargs="+")
    p.add_argument("--checkpoint", default=None, help="a convzoo train checkpoint")
    p.add_argument("--model", default=None, help="registered model name (with --pretrained)")
    p.add_argument("--pretrained", nargs="?", const="auto", default=None,
                   help="published weights: auto (torchvision, else timm), torchvision, timm, "
                        "or a checkpoint path; preprocessing and class names come with them")  # fmt: skip
    p.add_argument("--top-k", type=checked(int, low=1), default=5)
    p.add_argument("--weights", choices=("auto", "model", "ema"), default="auto")
    p.add_argument("--device", type=parse_device, default="auto")
