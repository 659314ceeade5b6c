"""The shared command-line layer: generated flags, one validation layer, one-line errors."""

import errno
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch

from convzoo import cli
from convzoo.cliutil import (
    Check,
    Parser,
    UsageError,
    add_config_flags,
    check_model_args,
    given_fields,
    option,
    parse_model_args,
    validate_config,
)


@dataclass(frozen=True)
class Toy:
    count: int = option(3, low=1)
    rate: float | None = option(None, above=0, below=1)
    mode: str = option("a", choices=("a", "b"))
    sizes: tuple[int, ...] = option((1, 2), low=1)
    flag: bool = True
    device: str = option("auto", device=True)
    extra: dict = None  # type: ignore[assignment]  # dict fields get no flag

    def __post_init__(self) -> None:
        validate_config(self)


def _parser() -> Parser:
    p = Parser(prog="convzoo toy")
    add_config_flags(p, Toy)
    return p


def test_flags_are_generated_typed_and_only_given_ones_are_kept():
    p = _parser()
    ns = p.parse_args(["--count", "5", "--rate", "none", "--mode", "b", "--sizes", "4", "8",
                       "--no-flag"])  # fmt: skip
    got = given_fields(ns, Toy)
    assert got == {"count": 5, "rate": None, "mode": "b", "sizes": (4, 8), "flag": False}
    assert Toy(**got).sizes == (4, 8)
    assert given_fields(p.parse_args([]), Toy) == {}
    assert "--extra" not in p.format_help()
    assert "default 3; >= 1" in p.format_help()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--count", "0"], "argument --count: must be >= 1, got 0"),
        (["--count", "x"], "argument --count: expected int, got 'x'"),
        (["--rate", "1"], "argument --rate: must be in (0, 1), got 1.0"),
        (["--rate", "nan"], "argument --rate: must be a number"),
        (["--sizes", "2", "0"], "argument --sizes: must be >= 1, got 0"),
        (["--mode", "c"], "must be one of a, b, got 'c'"),
        (["--device", "tpu"], "argument --device: unknown device 'tpu'"),
    ],
)
def test_bad_flag_values_are_one_line_naming_the_flag(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_while_parsing(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--device", "cuda"])
    assert "no CUDA GPU is available" in capsys.readouterr().err


def test_config_checks_name_the_field():
    with pytest.raises(UsageError, match="count must be >= 1, got 0"):
        Toy(count=0)
    with pytest.raises(UsageError, match="sizes must be >= 1, got -1"):
        Toy(sizes=(2, -1))
    assert Check(low=0, below=1).describe() == "in [0, 1)"
    assert Check(above=0).describe() == "> 0"


def test_model_args_are_literals_and_validated():
    assert parse_model_args(["drop_rate=0.2", "blocks=(3, 4)", "act=relu", "bn=True"]) == {
        "drop_rate": 0.2, "blocks": (3, 4), "act": "relu", "bn": True,
    }  # fmt: skip
    with pytest.raises(UsageError, match="expects KEY=VALUE"):
        parse_model_args(["drop_rate"])
    with pytest.raises(UsageError, match="given twice"):
        parse_model_args(["a=1", "a=2"])
    with pytest.raises(UsageError, match="num_classes: the number of classes comes from the data"):
        parse_model_args(["num_classes=5"])
    with pytest.raises(UsageError, match=r"drop_rate='abc': expects float"):
        check_model_args("resnet20_cifar", parse_model_args(["drop_rate=abc"]))
    with pytest.raises(UsageError, match="no such config field"):
        check_model_args("resnet20_cifar", {"nope": 1})
    check_model_args("resnet20_cifar", {"drop_rate": 0})  # an int is a valid float


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "nin_cifar", "--device", "tpu"], "--device: unknown device 'tpu'"),
        (["train", "nin_cifar", "--max-train-samples", "0"], "--max-train-samples: must be >= 1"),
        (["train", "nin_cifar", "--model-arg", "num_classes=5"], "num_classes"),
        (["train", "nin_cifar", "--model-arg", "drop_rate=abc"], "expects float"),
        (["predict", "x.png", "--checkpoint", "x.pt", "--top-k", "-1"], "--top-k: must be >= 1"),
        (["eval", "--checkpoint", "x.pt", "--batch-size", "0"], "--batch-size: must be >= 1"),
        (["search", "scaling", "--max-candidates", "0"], "--max-candidates: must be >= 1"),
        (["search", "scaling", "--base-resolution", "0"], "--base-resolution: must be >= 1"),
        (["search", "scaling", "--model-arg", "drop_rate=abc"], "expects float"),
        (["search", "fbnet", "--width-multiplier", "0"], "--width-multiplier: must be > 0"),
        (["search", "fbnet", "--alpha", "-1"], "--alpha: must be > 0"),
        (["search", "fbnet", "--device", "tpu"], "unknown device"),
    ],
)
def test_cli_refuses_bad_values_in_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # refused by the parser
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_usage_errors_raised_by_a_command_are_one_line(capsys, monkeypatch):
    def disk_full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "runs/x/last.pt")

    monkeypatch.setattr(cli, "cmd_list", disk_full)
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert err == "convzoo list: error: No space left on device: runs/x/last.pt\n"


def test_broken_pipe_exits_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "convzoo", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, as `| head -1` does
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err and "BrokenPipe" not in err
