"""``convzoo scale / cam / densenet-weights / draw-arch / roadmap``: argument parsing only."""

from __future__ import annotations

import argparse

__all__ = ["add_commands"]


def cmd_scale(args: argparse.Namespace) -> int:
    import torch

    from convzoo.bench.counts import count_macs, count_params
    from convzoo.lab.scaling import scale_model

    with torch.device("meta"):
        base = scale_model(args.name)
        scaled = scale_model(args.name, args.depth, args.width, args.resolution)
    rows = []
    for label, s in (("base", base), ("scaled", scaled)):
        params = count_params(s.model)
        macs = count_macs(s.model, s.input_size, in_channels=s.model.in_channels)
        rows.append((label, s.input_size, params, macs))
    print(f"{args.name} scaled by depth {args.depth}, width {args.width}, "
          f"resolution {args.resolution} (EfficientNet's rounding rules)")  # fmt: skip
    print(f"{'':8s} {'px':>5s} {'params M':>10s} {'GMACs':>9s}")
    for label, px, params, macs in rows:
        print(f"{label:8s} {px:5d} {params / 1e6:10.3f} {macs / 1e9:9.3f}")
    print(f"MACs x{rows[1][3] / rows[0][3]:.2f}, params x{rows[1][2] / rows[0][2]:.2f} "
          "(MACs: multiply-adds per image)")  # fmt: skip
    return 0


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def cmd_cam(args: argparse.Namespace) -> int:
    from convzoo.lab.cam import CamConfig, run_cam

    cfg = CamConfig(images=tuple(args.images), models=_names(args.model or ""),
                    checkpoints=_names(args.checkpoint or ""), pretrained=args.pretrained,
                    target=args.target, method=args.method, output=args.output,
                    device=args.device)  # fmt: skip
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


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scale", help="params and MACs of a model scaled by depth/width/resolution")
    p.add_argument("name", help="mobilenet_v1, mobilenet_v2, resnet50, efficientnet_b0, ...")
    p.add_argument("--depth", type=float, default=1.0, help="layers per stage x d (ceil)")
    p.add_argument("--width", type=float, default=1.0, help="channels x w (multiples of 8)")
    p.add_argument("--resolution", type=float, default=1.0, help="input size x r (multiple of 32)")
    p.set_defaults(func=cmd_scale)

    p = sub.add_parser("cam", help="class activation maps (CAM / Grad-CAM) of models, one PNG")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--model", help="NAME[,NAME...] (checked against the checkpoints)")
    p.add_argument("--checkpoint", help="PATH[,PATH...]: convzoo training checkpoints")
    p.add_argument("--pretrained", action="store_true", help="create_model(pretrained=True)")
    p.add_argument(
        "--class", dest="target", default=None, help="class name or index (default: top)"
    )
    p.add_argument("--method", choices=("auto", "cam", "gradcam"), default="auto")
    p.add_argument("--output", default="cam.png")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_cam)

    p = sub.add_parser("draw-arch", help="FBNet-style picture of a block spec (Figure 4)")
    p.add_argument("arch", metavar="ARCH", help="spec JSON (search output) or fbnet_a|b|c")
    p.add_argument("--output", default="arch.png")
    p.set_defaults(func=cmd_draw_arch)
