"""FBNet search on CIFAR-10 against hand-designed blocks on the same macro-architecture.

For each device given: measure the latency table of the CIFAR supernet there, run a short DNAS
search, then train the found architecture and two baselines built on the same macro-architecture
(all-"k3_e6" blocks, MobileNet v2's block; and FBNet-C's per-stage choices truncated to the
CIFAR macro's layer counts) with the same short schedule; report validation accuracy (held-out
split of the training images) and the measured latency on that device. Running it for "cpu" and
"cuda" shows whether the searched architectures differ between devices, as the paper claims.

    python benchmarks/nas_search.py --data DIR --devices cpu cuda --output OUT
    python benchmarks/nas_search.py --smoke          # tiny, digits, a minute on a CPU
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from convzoo.models.fbnet import FBNET_C, macro_spec, spec_from_json, spec_to_json
from convzoo.nas.fbnet_search import SearchConfig, measure_spec_latency, run_search
from convzoo.nas.supernet import SUPERNETS, FBNetSupernet
from convzoo.train.config import make_config
from convzoo.train.engine import train


def baselines(supernet: FBNetSupernet) -> dict[str, tuple]:
    macro = supernet.cfg.macro
    mbv2 = [["k3_e6"] * m.layers for m in macro]
    fbc = [[b.candidate for b in stage][: m.layers] for stage, m in zip(FBNET_C, macro)]
    widths = [replace(m, out_channels=supernet.cfg.width(m.out_channels)) for m in macro]
    return {
        "mobilenet_v2_style": macro_spec(mbv2, widths),
        "fbnet_c_style": macro_spec(fbc, widths),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None)
    p.add_argument("--devices", nargs="+", default=["cpu"])
    p.add_argument("--width-multiplier", type=float, default=0.25)
    p.add_argument("--search-epochs", type=int, default=4)
    p.add_argument("--train-epochs", type=int, default=4)
    p.add_argument("--max-train-samples", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--output", default="runs/nas_bench")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    if args.smoke:
        args.data, args.width_multiplier, args.search_epochs, args.train_epochs = None, 0.25, 2, 1
        args.max_train_samples, args.batch_size = 128, 32
    out = Path(args.output)
    rows = []
    for device in args.devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"skip {device}: no CUDA device")
            continue
        scfg = SearchConfig(data=args.data, width_multiplier=args.width_multiplier,
                            epochs=args.search_epochs, warmup_epochs=max(1, args.search_epochs // 4),
                            batch_size=args.batch_size, max_train_samples=args.max_train_samples,
                            device=device, output=str(out / f"search_{device}"),
                            progress=False)  # fmt: skip
        result = run_search(scfg)
        net = FBNetSupernet(replace(SUPERNETS["cifar"], width_multiplier=args.width_multiplier))
        found = spec_from_json((Path(scfg.output) / "arch.json").read_text())
        archs = {"searched": found, **baselines(net)}
        for name, spec in archs.items():
            model_args = net.model_args(spec)
            model_args.pop("num_classes")
            (out / f"{name}_{device}.json").parent.mkdir(parents=True, exist_ok=True)
            (out / f"{name}_{device}.json").write_text(spec_to_json(spec))
            tcfg = make_config(model="fbnet_c", model_args=model_args, data=args.data,
                               image_size=net.cfg.input_size, epochs=args.train_epochs,
                               batch_size=args.batch_size, lr=0.05, weight_decay=5e-4,
                               max_train_samples=args.max_train_samples, device=device,
                               output=str(out / f"train_{name}_{device}"), progress=False,
                               plots=False)  # fmt: skip
            final = train(tcfg)
            ms = measure_spec_latency({**model_args, "num_classes": 10}, net.cfg.input_size,
                                      device, 1)  # fmt: skip
            rows.append({"device": device, "arch": name, "val_acc": final.get("val_acc"),
                         "latency_ms_batch1": ms,
                         "blocks": [b.candidate for s in spec for b in s]})  # fmt: skip
        rows.append({"device": device, "arch": "searched (predicted by table)",
                     "latency_ms_batch1": result["predicted_latency_ms"]})  # fmt: skip
    (out / "nas_bench.json").write_text(json.dumps(rows, indent=1))
    print(f"{'device':8s} {'architecture':30s} {'val acc %':>9s} {'latency ms':>10s}")
    for r in rows:
        acc = f"{r['val_acc']:.2f}" if r.get("val_acc") is not None else "-"
        print(f"{r['device']:8s} {r['arch']:30s} {acc:>9s} {r['latency_ms_batch1']:10.3f}")
    for r in rows:
        if r["arch"] == "searched":
            print(f"{r['device']} searched: {' '.join(r['blocks'])}")


if __name__ == "__main__":
    main()
