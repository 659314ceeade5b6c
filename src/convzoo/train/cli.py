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
from convzoo.train.checkpoint import check_training_checkpoint, find_resume, load_checkpoint
from convzoo.train.config import TrainConfig, list_recipes, load_recipe
from convzoo.train.rundir import run_dir_of

# Fields with their own spelling on the command line.
_SPECIAL = ("model", "model_args", "data", "output")


def cmd_train(args: argparse.Namespace) -> int:
    from convzoo.train.engine import TrainingDiverged, train
    from convzoo.train.state import config_changes, refuse_fixed_changes

    overrides = {k: v for k, v in given_fields(args, TrainConfig).items() if k not in _SPECIAL}
    if args.model_arg:
        overrides["model_args"] = parse_model_args(args.model_arg)
    for key in ("model", "data", "output"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    resume: Path | None = None
    if args.resume:
        resume, base = _resume_config(args)
        # The run continues in the folder it is resumed from (a copied folder is a branch).
        overrides.setdefault("output", str(run_dir_of(resume)))
    else:
        if args.model is None:
            raise UsageError("convzoo train needs a MODEL (see convzoo list) or --resume DIR")
        base = load_recipe(args.recipe) if args.recipe else {}
        overrides.setdefault(
            "output", f"runs/{args.model}" + (f"-{args.recipe}" if args.recipe else "")
        )
    cfg = TrainConfig.from_dict({**base, **overrides})
    if resume:  # a changed model is named as such, before its arguments are checked
        refuse_fixed_changes(config_changes(base, cfg), resume)
    check_model_args(cfg.model, cfg.model_args)
    try:
        final = train(cfg, resume=resume or False)
    except TrainingDiverged as err:
        print(f"convzoo train: {err}", file=sys.stderr)
        return 3
    if final and os.environ.get("RANK", "0") == "0":  # once under torchrun
        top5 = f"  top-5 {final['val_top5']:.2f}%" if "val_top5" in final else ""
        print(f"final: val top-1 {final.get('val_acc', float('nan')):.2f}%{top5}  -> {cfg.output}")
    return 0


def _resume_config(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """(checkpoint to resume, the config it was trained with) for ``--resume [DIR | FILE]``."""
    if args.resume is True and args.output is None:
        raise UsageError("--resume needs the run directory: --resume DIR or --output DIR")
    if args.recipe:
        raise UsageError("--recipe starts a new run; a resume continues with the run's config")
    where = Path(args.output if args.resume is True else args.resume)
    path = find_resume(where) if where.is_dir() else where
    if path is None:
        raise FileNotFoundError(f"nothing to resume in {where}: no last.pt or prev.pt")
    ckpt = load_checkpoint(path)
    check_training_checkpoint(ckpt, path)
    return path, dict(ckpt["config"])


def cmd_eval(args: argparse.Namespace) -> int:
    from convzoo.train.inference import eval_checkpoint

    if args.pretrained is not None:
        r = _eval_pretrained(args)
    elif args.checkpoint is None:
        raise UsageError("eval needs --checkpoint PATH, or MODEL --pretrained [SOURCE] --data DIR")
    else:
        given = [flag for flag, dest in _PREPROCESS_FLAGS if getattr(args, dest) is not None]
        if given:
            raise UsageError(f"{given[0]} sets the preprocessing of --pretrained weights; a "
                             f"checkpoint's images are read exactly as its training read them")  # fmt: skip
        r = eval_checkpoint(args.checkpoint, args.data, split=args.split or "val",
                            weights=args.weights or "auto", batch_size=args.batch_size,
                            device=args.device, output=args.output, model_name=args.model,
                            workers=args.workers)  # fmt: skip
    top5 = f"  top-5 {r['top5']:.2f}%" if r["top5"] is not None else ""
    print(f"{r['n']} images ({r['weights']} weights): top-1 {r['acc']:.2f}%{top5}  "
          f"loss {r['loss']:.4f}")  # fmt: skip
    if "preprocess" in r:
        p = r["preprocess"]
        print(f"data {r['data']}; preprocessing: resize {p.resize} ({p.interpolation}), center "
              f"crop {p.crop}, mean {list(p.mean)}, std {list(p.std)}")  # fmt: skip
    for name, acc in zip(r["classes"], r["per_class"]):
        print(f"  {name:24s} {acc:6.2f}%")
    print(f"confusion matrix: {r['confusion_png']}")
    return 0


# eval's preprocessing flags (for --pretrained weights) and their Preprocess fields.
_PREPROCESS_FLAGS = (("--resize", "resize"), ("--crop", "crop"),
                     ("--interpolation", "interpolation"), ("--mean", "mean"), ("--std", "std"))  # fmt: skip


def _eval_pretrained(args: argparse.Namespace) -> dict[str, Any]:
    from convzoo.pretrained import parse_pretrained
    from convzoo.train.inference import eval_pretrained

    if args.checkpoint is not None:
        raise UsageError("--pretrained and --checkpoint both name the weights: give one "
                         "(--pretrained PATH evaluates a checkpoint on --data as published "
                         "weights are)")  # fmt: skip
    if args.model is None:
        raise UsageError("--pretrained needs the model: convzoo eval MODEL --pretrained [SOURCE] "
                         "--data DIR")  # fmt: skip
    if args.data is None:
        raise UsageError("--pretrained needs --data DIR: class folders of images named by the "
                         "weights' classes ('tench' or 'n01440764' for ImageNet weights)")  # fmt: skip
    for flag, value in (("--split", args.split), ("--weights", args.weights)):
        if value is not None:
            raise UsageError(f"{flag} picks from a training checkpoint (--checkpoint); with "
                             f"--pretrained every image under --data is evaluated")  # fmt: skip
    source = parse_pretrained(args.pretrained)
    if source is False:
        raise UsageError("--pretrained none: eval needs weights (auto, torchvision, timm or a "
                         "checkpoint path)")  # fmt: skip
    preprocess = {dest: getattr(args, dest) for _, dest in _PREPROCESS_FLAGS}
    return eval_pretrained(args.model, source, args.data, batch_size=args.batch_size,
                           device=args.device, output=args.output,
                           workers=4 if args.workers is None else args.workers,
                           **preprocess)  # fmt: skip


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
    _add_train(sub)
    _add_eval(sub)
    _add_predict(sub)


def _add_train(sub: argparse._SubParsersAction[Any]) -> None:
    """The train command, its flags generated from TrainConfig."""
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


def _add_eval(sub: argparse._SubParsersAction[Any]) -> None:
    """The eval command."""
    p = add_command(sub, "eval", cmd_eval,
                    help="accuracy, top-5, per-class and confusion matrix of a checkpoint or of "
                         "published weights")  # fmt: skip
    p.add_argument("model", nargs="?", default=None,
                   help="model name: the model to build with --pretrained; with --checkpoint, "
                        "checked against it")  # fmt: skip
    p.add_argument("--checkpoint", default=None, help="a convzoo train checkpoint")
    p.add_argument("--pretrained", nargs="?", const="auto", default=None,
                   help="published weights: auto (torchvision, else timm), torchvision, timm, or "
                        "a checkpoint path; evaluated on every image of --data, preprocessed as "
                        "the weights expect, class folders matched to the weights' classes by "
                        "name (ImageNet: 'tench' or WordNet ID 'n01440764')")  # fmt: skip
    p.add_argument("--data", default=None,
                   help="with --checkpoint: default the run's data; with --pretrained: class "
                        "folders, or a folder whose val/ holds them")  # fmt: skip
    p.add_argument("--split", choices=("val", "test"), default=None,
                   help="--checkpoint: val (the run's held-out split, default) or test (CIFAR's "
                        "test batches)")  # fmt: skip
    p.add_argument("--weights", choices=("auto", "model", "ema"), default=None,
                   help="--checkpoint: its model or EMA weights (default auto: EMA if any)")  # fmt: skip
    p.add_argument("--batch-size", type=checked(int, low=1), default=256)
    p.add_argument("--device", type=parse_device, default="auto")
    p.add_argument("--workers", type=checked(int, low=0), default=None,
                   help="DataLoader workers (default: 4 with --pretrained, the run's with "
                        "--checkpoint)")  # fmt: skip
    p.add_argument("--output", default=None,
                   help="where confusion.png goes (default RUN/eval, or "
                        "runs/MODEL-pretrained/eval with --pretrained)")  # fmt: skip
    g = p.add_argument_group("preprocessing of --pretrained weights (default: the weights' own)")
    g.add_argument("--resize", type=checked(int, low=1), default=None,
                   help="shorter side after resizing, pixels")  # fmt: skip
    g.add_argument("--crop", type=checked(int, low=1), default=None,
                   help="center crop, pixels")  # fmt: skip
    g.add_argument("--interpolation", choices=("bilinear", "bicubic", "nearest"), default=None)
    g.add_argument(
        "--mean", type=float, nargs="+", default=None, help="per channel, pixels in 0..1"
    )
    g.add_argument("--std", type=checked(float, above=0), nargs="+", default=None,
                   help="per channel, pixels in 0..1")  # fmt: skip


def _add_predict(sub: argparse._SubParsersAction[Any]) -> None:
    """The predict command."""
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
