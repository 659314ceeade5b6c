"""convzoo compare: every registered variant, our counts beside the paper's."""

from __future__ import annotations

import pytest

import convzoo
from convzoo.bench.compare import COMPARE_HEADER, compare_rows, format_compare
from convzoo.bench.counts import model_counts
from convzoo.cli import main


def test_lists_every_registered_model_with_its_paper_numbers():
    rows = compare_rows(macs=False)
    assert [r["model"] for r in rows] == convzoo.list_models()
    for r in rows:
        info = convzoo.model_info(r["model"])
        if info.params is not None:
            assert r["params_m"] * 1e6 == pytest.approx(info.params, abs=0.5)
        assert r["paper_params_m"] == info.paper_params_m
        assert r["paper_macs_g"] == info.paper_macs_g
        assert r["paper_accuracy"] == info.paper_accuracy
        if info.paper_params_m is not None:
            assert r["params_diff_m"] == pytest.approx(r["params_m"] - info.paper_params_m)
    assert all(len(line) == len(COMPARE_HEADER) for line in format_compare(rows))


def test_macs_column_and_diff():
    (row,) = compare_rows("nin_cifar")
    assert row["macs_g"] * 1e9 == pytest.approx(model_counts("nin_cifar")["macs"])
    assert row["macs_diff_g"] is None  # the NiN paper prints no MAC count
    assert (
        format_compare(
            [{**row, "paper_macs_g": 0.2, "macs_diff_g": 0.0464, "macs_diff_pct": 23.2}]
        )[0][COMPARE_HEADER.index("diff G (%)")]
        == "+0.046 (+23.2%)"
    )


def test_cli_compare(capsys):
    assert main(["compare", "nin*"]) == 0
    out = capsys.readouterr().out
    assert "nin_cifar" in out and "paper GMACs" in out and "91.19" in out
    assert main(["compare", "nothing_matches*"]) == 2


@pytest.mark.slow
def test_compare_with_macs_for_every_model():
    rows = compare_rows()
    assert [r["model"] for r in rows] == convzoo.list_models()
    assert all(r["macs_g"] > 0 for r in rows)


def test_compare_markdown_table(capsys):

    assert main(["compare", "nin*", "--markdown"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| model |") and lines[1].startswith("|---")
    assert lines[2].startswith("| nin_cifar | 32 | 0.967 |")
