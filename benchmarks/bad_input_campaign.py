"""Every bad input of issue 11, through the real ``python3 -m convzoo`` command, in subprocesses.

Prints a table: case, exit code, whether a traceback reached the user, and the first line of the
message. A case passes when it exits with its expected status (2 for a usage error, 3 for a
divergence, 0 where the input is legal and the point is what is reported) without a traceback.
Runs in a temporary directory with tiny configs (8 px NiN, 64 digits), in a few minutes on 2 cores.

    python3 benchmarks/bad_input_campaign.py [--markdown]
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = ["--image-size", "8", "--crop-padding", "1", "--batch-size", "16",
        "--max-train-samples", "64", "--model-arg", "blocks=((3, 8, 8, 8), (3, 8, 8, 8), (3, 8, 8, 0))",
        "--model-arg", "batch_norm=True", "--no-progress", "--no-plots"]  # fmt: skip


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]  # after "python3 -m convzoo"; or a whole command starting with the python
    # interpreter (a wrapper script); or, with ``shell``, one shell command line
    expect: int = 2
    shell: bool = False
    stdout_line: str = ""  # with exit 0: the first stdout line containing this is shown
    library: bool = False  # a Python call: its exception's last line is the message


@dataclass(frozen=True)
class Result:
    case: Case
    code: int
    traceback: bool
    message: str

    @property
    def ok(self) -> bool:
        return self.code == self.case.expect and (self.case.library or not self.traceback)


def run(case: Case, cwd: Path, env: dict[str, str]) -> Result:
    if case.shell:
        cmd: str | list[str] = case.argv[0]
    elif case.argv[0] == sys.executable:
        cmd = case.argv
    else:
        cmd = [sys.executable, "-m", "convzoo", *case.argv]
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                           shell=case.shell, executable="/bin/bash" if case.shell else None)  # fmt: skip
        code, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return Result(case, -1, False, "timed out after 300 s (blocked?)")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if case.library:
        lines = lines[-1:]
    if case.stdout_line:
        lines = [ln for ln in out.splitlines() if case.stdout_line in ln] or lines
    return Result(case, code, "Traceback" in err, lines[0][:150] if lines else "(no message)")


def prepare(tmp: Path, env: dict[str, str]) -> None:
    """A finished tiny run, a copy mid-way, data folders and crafted files the cases use."""
    train = [sys.executable, "-m", "convzoo", "train", "nin_cifar", *TINY]
    subprocess.run([*train, "--output", "run", "--epochs", "1", "--checkpoint-every-steps", "2"],
                   cwd=tmp, env=env, check=True, capture_output=True)  # fmt: skip
    from PIL import Image

    for name, classes in (("three", "abc"), ("one", "a")):
        for c in classes:
            (tmp / name / c).mkdir(parents=True)
            for i in range(6):
                Image.new("RGB", (8, 8), (40 * i, 10, 0)).save(tmp / name / c / f"{i}.png")
    os.mkfifo(tmp / "three" / "a" / "fifo.png")
    os.mkfifo(tmp / "fifo.png")
    cifar = tmp / "cifar" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    batch = pickle.dumps({"data": [[0] * 3072] * 2, "labels": [0, 1]})
    for i in range(1, 6):
        (cifar / f"data_batch_{i}").write_bytes(batch)
    meta = pickle.dumps({"label_names": [f"c{i}" for i in range(10)]})
    (cifar / "batches.meta").write_bytes(meta[: len(meta) // 2])
    crafted = textwrap.dedent(
        """
        import os, sys, torch
        class Mkdir:
            def __reduce__(self):
                return (os.mkdir, ("pwned",))
        torch.save({"model": {}, "config": Mkdir()}, sys.argv[1])
        """
    )
    subprocess.run([sys.executable, "-c", crafted, "crafted.pt"], cwd=tmp, env=env, check=True)


HOLD_LOCK = ("from convzoo.train.rundir import RunLock; import time; RunLock('held').acquire(); "
             "print('LOCKED', flush=True); time.sleep(600)")  # fmt: skip
DISK_FULL = textwrap.dedent(
    """
    import errno, os, sys, torch
    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    torch.save = full  # every checkpoint write fails as on a full disk
    from convzoo.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def cases() -> list[Case]:
    py = sys.executable
    t = ["train", "nin_cifar", *TINY]
    return [
        Case("train --device cuda (no GPU)", [*t, "--device", "cuda", "--output", "o1"]),
        Case(
            "predict --device cuda (no GPU)",
            ["predict", "x.png", "--checkpoint", "run/last.pt", "--device", "cuda"],
        ),
        Case("search fbnet --device cuda (no GPU)", ["search", "fbnet", "--device", "cuda"]),
        Case("train --device tpu", [*t, "--device", "tpu", "--output", "o2"]),
        Case(
            "disk full while checkpointing",
            [py, "-c", DISK_FULL, *t, "--output", "o3", "--epochs", "1"],
        ),
        Case("read-only output folder (/sys)", [*t, "--output", "/sys/convzoo_run"]),
        Case("truncated batches.meta", [*t, "--data", "cifar", "--output", "o4"]),
        Case(
            "resume with a different model",
            ["train", "resnet20_cifar", "--resume", "run", "--epochs", "2"],
        ),
        Case(
            "resume with different data",
            ["train", "--resume", "run", "--epochs", "2", "--data", "three"],
        ),
        Case("resume --output elsewhere", ["train", "--resume", "run", "--output", "o5"]),
        Case(
            "resume mid-epoch with --batch-size",
            ["train", "--resume", "run/prev.pt", "--batch-size", "7"],
        ),
        Case(
            "predict --top-k -1",
            ["predict", "x.png", "--checkpoint", "run/last.pt", "--top-k", "-1"],
        ),
        Case("bench --threads 0", ["bench", "nin_cifar", "--tiny", "--threads", "0"]),
        Case(
            'create_model(num_classes="10")',
            [py, "-c", "import convzoo; convzoo.create_model('nin_cifar', num_classes='10')"],
            expect=1,
            library=True,
        ),
        Case("--model-arg num_classes=5", [*t, "--model-arg", "num_classes=5", "--output", "o6"]),
        Case("--model-arg drop_rate=abc", [*t, "--model-arg", "drop_rate=abc", "--output", "o7"]),
        Case(
            "search scaling --model-args 'not json'",
            ["search", "scaling", "--model-args", "not json"],
        ),
        Case(
            "convzoo list | head -1",
            [f"set -o pipefail; {py} -m convzoo list | head -1 >/dev/null"],
            expect=0,
            shell=True,
        ),
        Case("train --max-train-samples 0", [*t, "--max-train-samples", "0", "--output", "o8"]),
        Case("search scaling --max-candidates 0", ["search", "scaling", "--max-candidates", "0"]),
        Case("search scaling --base-resolution 0", ["search", "scaling", "--base-resolution", "0"]),
        Case(
            "export --input-size 0",
            ["export", "nin_cifar", "--tiny", "--input-size", "0", "--output", "o9.onnx"],
        ),
        Case("search fbnet --width-multiplier 0", ["search", "fbnet", "--width-multiplier", "0"]),
        Case("search fbnet --alpha -1", ["search", "fbnet", "--alpha", "-1"]),
        Case(
            "one-class dataset: no top-5",
            [
                "train",
                "nin_cifar",
                *TINY,
                "--data",
                "one",
                "--val-fraction",
                "0.34",
                "--output",
                "o10",
            ],
            expect=0,
            stdout_line="final:",
        ),
        Case(
            "FIFO in the data folder (skipped)",
            ["train", "nin_cifar", *TINY, "--data", "three", "--output", "o11"],
            expect=0,
            stdout_line="skipped",
        ),
        Case("predict on a FIFO", ["predict", "fifo.png", "--checkpoint", "run/last.pt"]),
        Case("crafted checkpoint (code on unpickle)", ["eval", "--checkpoint", "crafted.pt"]),
        Case("a second live run into one folder", [*t, "--output", "held"]),
        Case(
            "divergence: --lr 1e6",
            [*t, "--lr", "1e6", "--output", "o12", "--epochs", "2"],
            expect=3,
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        prepare(tmp, env)
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK], cwd=tmp, env=env,
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert holder.stdout is not None and holder.stdout.readline().strip() == "LOCKED"
        t0 = time.perf_counter()
        try:
            results = []
            for case in cases():
                results.append(run(case, tmp, env))
                # Progress on stderr: a run cut short still shows what it found.
                print(f"{case.name}: exit {results[-1].code}", file=sys.stderr, flush=True)
        finally:
            holder.kill()
        assert not (tmp / "pwned").exists(), "the crafted checkpoint ran its code"
    _print(results, args.markdown)
    bad = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(bad)}/{len(results)} cases as expected "
          f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    sys.exit(1 if bad else 0)


def _print(results: list[Result], markdown: bool) -> None:
    rows = [(r.case.name, str(r.code), "yes" if r.traceback else "no",
             "ok" if r.ok else f"EXPECTED {r.case.expect}", r.message) for r in results]  # fmt: skip
    head = ("case", "exit", "traceback", "verdict", "first line of the message")
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in rows:
            print("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        return
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    for row in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])


if __name__ == "__main__":
    main()
