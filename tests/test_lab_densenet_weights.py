"""DenseNet's Figure 5: the weight map from a checkpoint, checked against the weights themselves."""

from __future__ import annotations

import json

import pytest

from convzoo.cli import main
from convzoo.models.densenet import DenseBlock


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("dn") / "run"
    argv = ["train", "densenet40_k12_cifar", "--epochs", "1", "--max-train-samples", "64",
            "--batch-size", "32", "--model-arg", "block_config=(3, 2, 2)", "--model-arg",
            "growth_rate=4", "--output", str(out), "--no-progress", "--no-plots"]  # fmt: skip
    assert main(argv) == 0
    return out / "last.pt"


def _mean_abs_per_map(weight, start: int, n: int) -> float:
    return float(weight.detach()[:, start : start + n].abs().sum()) / n


def test_cli_densenet_weights_prints_the_papers_quantity(checkpoint, tmp_path, capsys):
    from convzoo.train.inference import load_trained

    png = tmp_path / "w.png"
    capsys.readouterr()
    assert main(["densenet-weights", str(checkpoint), "--output", str(png)]) == 0
    out = capsys.readouterr().out
    assert png.stat().st_size > 0
    blocks = json.loads(png.with_suffix(".json").read_text())
    assert [b["after"] for b in blocks] == ["transition", "transition", "classifier"]
    assert [len(b["weights"]) for b in blocks] == [4, 3, 3]  # sources 0..L

    model, _ = load_trained(checkpoint, device="cpu")
    dense = [m for m in model.modules() if isinstance(m, DenseBlock)]
    first = dense[0]
    c0, k = first[0].conv1.in_channels, 4
    # Layer 3 of block 1 reads [input, layer 1, layer 2]: source 2 is its last k input maps.
    w = first[2].conv1.weight
    assert blocks[0]["weights"][2][2] == pytest.approx(_mean_abs_per_map(w, c0 + k, k), rel=1e-6)
    assert blocks[0]["weights"][0][0] == pytest.approx(_mean_abs_per_map(first[0].conv1.weight,
                                                                         0, c0), rel=1e-6)  # fmt: skip
    # No connection from a layer to itself or an earlier one.
    assert blocks[0]["weights"][3][0] is None and blocks[0]["weights"][3][2] is None
    # The classifier column of the last block: the linear layer's weights on each source's maps.
    last_c0 = dense[-1][0].conv1.in_channels
    fc = model.head.fc.weight
    assert blocks[2]["weights"][0][-1] == pytest.approx(_mean_abs_per_map(fc, 0, last_c0), rel=1e-6)
    assert blocks[2]["weights"][2][-1] == pytest.approx(
        _mean_abs_per_map(fc, last_c0 + k, k), rel=1e-6
    )
    # What is printed is what is written.
    lines = [line.split() for line in out.splitlines() if line.strip().startswith("s=")]
    assert float(lines[2][3]) == pytest.approx(blocks[0]["weights"][2][2], abs=5e-5)


def test_cli_densenet_weights_bad_input_is_one_line(tmp_path, capsys):
    assert main(["densenet-weights", str(tmp_path / "none.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.pt" in err[0]
