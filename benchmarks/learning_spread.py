"""The spread of what the suite's learning test measures, over seeds and thread counts.

``tests/test_train.py::test_tiny_model_learns_digits`` trains a tiny NiN for two epochs (``--epochs``) on 800
embedded digits (12 px). A threshold on what it learns must hold on any CPU and thread count, so
it is set from this spread with a wide margin, not from one machine's run. Each (threads, seed)
runs in its own process so that ``OMP_NUM_THREADS`` takes effect.

    python benchmarks/learning_spread.py --seeds 8 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ONE_RUN = """
import json, sys, torch
torch.set_num_threads(int(sys.argv[2]))
from convzoo.train.config import TrainConfig
from convzoo.train.engine import train
cfg = TrainConfig(model="nin_cifar", drop_rate=0.0, image_size=12, crop_padding=1, batch_size=32,
                  epochs=int(sys.argv[4]), lr=0.1, output=sys.argv[3], progress=False, plots=False,
                  max_train_samples=800, schedule="onecycle", ema_decay=0.9, seed=int(sys.argv[1]),
                  model_args={"blocks": ((3, 16, 16, 16), (3, 16, 16, 16), (3, 16, 16, 0)),
                              "batch_norm": True})
final = train(cfg)
rows = [json.loads(x) for x in open(sys.argv[3] + "/metrics.jsonl")]
print(json.dumps({"val_acc": final["val_acc"],
                  "loss_drop": rows[0]["train_loss"] - rows[-1]["train_loss"]}))
"""


def run(seed: int, threads: int, epochs: int) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", ONE_RUN, str(seed), str(threads), tmp + "/r", str(epochs)],
                             env=env, capture_output=True, text=True, check=True).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--epochs", type=int, default=2, help="the test trains 2")
    args = ap.parse_args()
    print(f"{'threads':>7} {'seed':>4} {'val_acc %':>9} {'loss drop':>9}")
    results = []
    for seed in range(args.seeds):
        for threads in args.threads:  # alternate thread counts within each seed
            r = run(seed, threads, args.epochs)
            results.append(r)
            print(f"{threads:7d} {seed:4d} {r['val_acc']:9.2f} {r['loss_drop']:9.3f}", flush=True)
    for key in ("val_acc", "loss_drop"):
        vals = [r[key] for r in results]
        print(f"{key}: min {min(vals):.3f}  mean {statistics.mean(vals):.3f}  "
              f"max {max(vals):.3f}  stdev {statistics.stdev(vals):.3f}  (n={len(vals)})")  # fmt: skip


if __name__ == "__main__":
    main()
