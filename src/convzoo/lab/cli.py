"""``convzoo scale / cam / draw-arch / densenet-weights / roadmap``: flags map onto the lab's
config dataclasses (``convzoo.cliutil``); the work is in the library modules beside this one."""

from __future__ import annotations

import argparse
from typing import Any

from convzoo.cliutil import add_command, add_config_flags, given_fields
from convzoo.lab.cam import CamConfig
from convzoo.lab.roadmap import RoadmapRunConfig
from convzoo.lab.scaling import ScaleConfig

__all__ = ["add_commands"]


def _print_readings() -> None:
    from convzoo.lab.scaling import table3_readings

    rows = table3_readings()
    width = max(len(r["row"]) for r in rows)
    print(f"{'printed row':{width}s} {'paper G':>7s} {'ours G':>7s} {'diff':>7s}  reading")
    for r in rows:
        mark = "" if r["within_5pct"] else "  (not within 5%)"
        print(f"{r['row']:{width}s} {r['paper_gflops']:7.1f} {r['gmacs']:7.3f} "
              f"{r['diff_pct']:+6.1f}%  {r['reading']}{mark}")  # fmt: skip
    print("G = billions of multiply-adds per image (the papers' FLOPs); EfficientNet's rounding "
          "rules; sources: convzoo.lab.scaling")  # fmt: skip


def cmd_scale(args: argparse.Namespace) -> int:
    import torch

    from convzoo.bench.counts import count_macs, count_params
    from convzoo.cliutil import UsageError
    from convzoo.lab.scaling import scale_model

    if args.readings:
        _print_readings()
        return 0
    if args.name is None:
        raise UsageError("give a model NAME to scale (or --readings)")
    cfg = ScaleConfig(**given_fields(args, ScaleConfig))
    with torch.device("meta"):
        base = scale_model(args.name)
        scaled = scale_model(args.name, cfg.depth, cfg.width, cfg.resolution, cfg.input_size)
    rows = []
    for label, s in (("base", base), ("scaled", scaled)):
        params = count_params(s.model)
        macs = count_macs(s.model, s.input_size, in_channels=s.model.in_channels)
        rows.append((label, s.input_size, params, macs))
    res = f"input {cfg.input_size} px" if cfg.input_size else f"resolution {cfg.resolution}"
    print(f"{args.name} scaled by depth {cfg.depth}, width {cfg.width}, {res} "
          "(EfficientNet's rounding rules)")  # fmt: skip
    print(f"{'':8s} {'px':>5s} {'params M':>10s} {'GMACs':>9s}")
    for label, px, params, macs in rows:
        print(f"{label:8s} {px:5d} {params / 1e6:10.3f} {macs / 1e9:9.3f}")
    print(f"MACs x{rows[1][3] / rows[0][3]:.2f}, params x{rows[1][2] / rows[0][2]:.2f} "
          "(MACs: multiply-adds per image)")  # fmt: skip
    return 0


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (text or "").split(",") if t.strip())


def cmd_cam(args: argparse.Namespace) -> int:
    from convzoo.lab.cam import run_cam

    fields = given_fields(args, CamConfig)
    fields.update(images=tuple(args.images), models=_names(args.model),
                  checkpoints=_names(args.checkpoint))  # fmt: skip
    cfg = CamConfig(**fields)
    for r in run_cam(cfg):
        print(f"{r.image}  {r.model}  {r.method}: class {r.class_name} (index {r.class_index}, "
              f"p={r.probability:.3f}); peak at row {r.peak_row}, col {r.peak_col}")  # fmt: skip
    print(f"wrote {cfg.output} and {cfg.output.rsplit('.', 1)[0]}.json")
    return 0


def cmd_draw_arch(args: argparse.Namespace) -> int:
    from collections import Counter

    from convzoo.lab.draw_arch import draw_arch, resolve_spec

    spec, title = resolve_spec(args.arch)
    rows = draw_arch(spec, args.output, title=title)
    print(f"{'layer':>5} {'stage':>5}  {'block':9s} {'out':>5} {'stride':>6}")
    for r in rows:
        print(f"{r.layer:5d} {r.stage:5d}  {r.candidate:9s} {r.out_channels:5d} {r.stride:6d}")
    counts = Counter(r.candidate for r in rows)
    print("blocks: " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    print(f"wrote {args.output}")
    return 0


def cmd_densenet_weights(args: argparse.Namespace) -> int:
    from convzoo.lab.densenet_weights import densenet_weight_map

    for bw in densenet_weight_map(args.checkpoint, args.output):
        n = len(bw.weights) - 1
        print(f"dense block {bw.block} ({n} layers, k={bw.growth_rate}, input {bw.in_channels} "
              f"maps): mean |w| per input map, rows = source s, columns = target 1..{n}, "
              f"{bw.after}")  # fmt: skip
        for s, row in enumerate(bw.weights):
            cells = " ".join("      ." if v is None else f"{v:7.4f}" for v in row)
            print(f"  s={s:<3d} {cells}")
    print(f"wrote {args.output} and {args.output.rsplit('.', 1)[0]}.json")
    return 0


def cmd_roadmap(args: argparse.Namespace) -> int:
    from convzoo.lab.roadmap import run_roadmap

    cfg = RoadmapRunConfig(**given_fields(args, RoadmapRunConfig))
    rows = run_roadmap(cfg)
    print(f"{'step':40s} {'ours top-1 %':>12s} {'paper top-1 %':>13s} {'paper GFLOPs':>12s}")
    for r in rows:
        print(f"{r['model']:40s} {r['val_acc']:12.2f} {r['paper_top1']:13.1f} "
              f"{r['paper_gflops']:12.2f}")  # fmt: skip
    print(f"ours: validation top-1 after {cfg.epochs} epochs at {cfg.image_size}px "
          f"({cfg.data or 'embedded digits'}); paper: ImageNet-1K top-1 (Figure 2)")  # fmt: skip
    print(f"wrote {cfg.output}/roadmap.json and {cfg.output}/roadmap.png")
    return 0


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    p = add_command(sub, "scale", cmd_scale,
                    help="params and MACs of a model scaled by depth, width and resolution")  # fmt: skip
    p.add_argument("name", nargs="?",
                   help="mobilenet_v1, mobilenet_v2, resnet50, efficientnet_b0, ...")  # fmt: skip
    p.add_argument("--readings", action="store_true",
                   help="EfficientNet Table 3 / 7: every reading of the rows counted, no NAME")  # fmt: skip
    add_config_flags(p, ScaleConfig)

    p = add_command(sub, "cam", cmd_cam, help="class activation maps (CAM / Grad-CAM), one PNG")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--model", help="NAME[,NAME...] (checked against the checkpoints)")
    p.add_argument("--checkpoint", help="PATH[,PATH...]: convzoo training checkpoints")
    add_config_flags(p, CamConfig, skip=("images", "models", "checkpoints"))

    p = add_command(sub, "densenet-weights", cmd_densenet_weights,
                    help="DenseNet's Figure 5: weight from each layer to each later one")  # fmt: skip
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="convzoo training checkpoint")
    p.add_argument("--output", default="densenet_weights.png", help="PNG to write")

    p = add_command(sub, "roadmap", cmd_roadmap,
                    help="train every ConvNeXt roadmap step with one recipe; Figure 2 chart")  # fmt: skip
    add_config_flags(p, RoadmapRunConfig)

    p = add_command(sub, "draw-arch", cmd_draw_arch,
                    help="FBNet-style picture of a block spec (Figure 4)")  # fmt: skip
    p.add_argument("arch", metavar="ARCH", help="spec JSON (search output) or fbnet_a|b|c")
    p.add_argument("--output", default="arch.png", help="PNG to write")
