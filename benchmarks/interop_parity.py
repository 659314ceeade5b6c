"""Max abs difference between every torchvision / timm source and its convzoo conversion.

Each source has random weights and random BatchNorm statistics (``randomize_``, seed 0; nothing
downloads); the conversion reads its config off the source (no overrides) and the difference is
taken on ``verify``'s probe (one 64x64 image, or the model's own size if smaller; float32, eval
mode), next to the output's scale and their ratio ``diff / max(1, scale)``, the quantity the check
holds under 5e-5 (``core.tolerance``). One thread, so the
numbers are reproducible bit for bit on one CPU type. Prints a Markdown table.

    python benchmarks/interop_parity.py [--library torchvision|timm] [NAME ...]
"""

from __future__ import annotations

import argparse
import time

import torch

from convzoo.interop.convert import (
    Library,
    convert,
    random_source,
    shared_models,
    source_name,
)
from convzoo.interop.core import probe_input, verify

# timm's own NFNet parametrization (gamma folded into the convs) converts too; the reference
# weights (dm_nfnet_f*) are what SOURCE_NAMES picks.
EXTRA: dict[Library, list[tuple[str, str]]] = {"timm": [("nfnet_f0", "nfnet_f0")]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", choices=("torchvision", "timm"), action="append")
    parser.add_argument("names", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| library | convzoo | source | max abs diff | max abs output | relative | s |")
    print("|---|---|---|---|---|---|---|")
    libraries: list[Library] = args.library or ["torchvision", "timm"]
    for library in libraries:
        names = args.names or shared_models(library)
        pairs = [(n, source_name(n, library)) for n in names]
        pairs += [] if args.names else EXTRA.get(library, [])
        for name, arch in pairs:
            if arch is None:
                continue
            start = time.perf_counter()
            source = random_source(library, arch)
            model = convert(name, source, library, check=False)
            diff = verify(source, model, name, library)
            with torch.no_grad():
                scale = source(probe_input(name, torch.device("cpu"), torch.float32)).abs().max()
            print(
                f"| {library} | {name} | {arch} | {diff:.3g} | {scale:.3g} | "
                f"{diff / max(1.0, scale.item()):.2g} | {time.perf_counter() - start:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
