"""``convzoo train / eval / predict``. Every TrainConfig field is a flag (``--batch-size``, ...);
only flags given on the command line override the recipe (or, with --resume, the run's config)."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import sys
import typing
from pathlib import Path
from typing import Any

from convzoo.train.config import TrainConfig, list_recipes, load_recipe

# Fields with their own spelling on the command line.
_SPECIAL = {"model", "model_args", "data", "output"}


def _parse_optional(kind: type) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(TrainConfig)
    group = p.add_argument_group("TrainConfig fields (override the recipe; 'none' clears one)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in _SPECIAL:
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = type(None) in typing.get_args(hint)
        base = args[0] if optional else hint
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        if base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) is tuple:
            kw.update(nargs="+", type=typing.get_args(base)[0])
        else:
            kw["type"] = _parse_optional(base) if optional else base
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        group.add_argument(flag, help=f"default {default}", **kw)


def _model_args(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--model-arg expects KEY=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value  # a bare word is a string
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from convzoo.train.checkpoint import find_resume, load_checkpoint
    from convzoo.train.engine import TrainingDiverged, train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in fields and k not in _SPECIAL}
    if args.model_arg:
        overrides["model_args"] = _model_args(args.model_arg)
    for key in ("data", "output"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.model is not None:
        overrides["model"] = args.model
    if args.resume:
        if not isinstance(args.resume, str) and args.output is None:
            raise ValueError("--resume needs the run directory: --resume DIR or --output DIR")
        where = Path(args.resume if isinstance(args.resume, str) else args.output)
        path = find_resume(where) if where.is_dir() else where
        if path is None:
            raise FileNotFoundError(f"nothing to resume in {where}: no last.pt or prev.pt")
        base = load_checkpoint(path)["config"]
        cfg = TrainConfig.from_dict({**base, **overrides})
        resume: Any = path
    else:
        if args.model is None:
            raise ValueError("convzoo train needs a MODEL (see convzoo list) or --resume DIR")
        base = load_recipe(args.recipe) if args.recipe else {}
        overrides.setdefault(
            "output", f"runs/{args.model}" + (f"-{args.recipe}" if args.recipe else "")
        )
        cfg = TrainConfig.from_dict({**base, **overrides})
        if find_resume(cfg.output) is not None:
            raise ValueError(f"{cfg.output} already holds a run: continue it with --resume "
                             f"{cfg.output}, or choose another --output")  # fmt: skip
        resume = False
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
        from convzoo.train.engine import pick_device

        if args.model is None or args.checkpoint is not None:
            raise ValueError("--pretrained takes --model NAME and no --checkpoint")
        model = create_model(args.model, pretrained=parse_pretrained(args.pretrained))
        results = predict(model.to(pick_device(args.device)), args.images, args.top_k)
    elif args.checkpoint is None:
        raise ValueError("predict needs --checkpoint PATH, or --model NAME --pretrained [SOURCE]")
    else:
        results = predict_images(args.images, args.checkpoint, top_k=args.top_k,
                                 weights=args.weights, device=args.device)  # fmt: skip
    for path, top in zip(args.images, results):
        print(path)
        for name, prob in top:
            print(f"  {prob * 100:6.2f}%  {name}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (embedded digits when no --data)",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("model", nargs="?", default=None, help="registered model name")
    p.add_argument("--recipe", help=f"recipe name ({', '.join(list_recipes())}) or JSON file")
    p.add_argument("--data", default=None, help="data directory; default: embedded digits")
    p.add_argument("--output", default=None, help="run directory (default runs/MODEL[-RECIPE])")
    p.add_argument("--resume", nargs="?", const=True, default=False,
                   help="continue the run in --output, or in the given directory / checkpoint")  # fmt: skip
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="model config override, e.g. --model-arg batch_norm=True")  # fmt: skip
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "eval", help="accuracy, top-5, per-class and confusion matrix of a checkpoint"
    )
    p.add_argument(
        "model", nargs="?", default=None, help="model name (checked against the checkpoint)"
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default=None, help="default: the run's data")
    p.add_argument("--split", choices=("val", "test"), default="val",
                   help="val: the run's held-out split; test: CIFAR's test batches")  # fmt: skip
    p.add_argument("--weights", choices=("auto", "model", "ema"), default="auto")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--output", default=None, help="where confusion.png goes")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="top-k classes with probabilities for image files")
    p.add_argument("images", nargs="+")
    p.add_argument("--checkpoint", default=None, help="a convzoo train checkpoint")
    p.add_argument("--model", default=None, help="registered model name (with --pretrained)")
    p.add_argument("--pretrained", nargs="?", const="auto", default=None,
                   help="published weights: auto (torchvision, else timm), torchvision, timm, "
                        "or a checkpoint path; preprocessing and class names come with them")  # fmt: skip
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--weights", choices=("auto", "model", "ema"), default="auto")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_predict)
