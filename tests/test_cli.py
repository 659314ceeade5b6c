import subprocess
import sys

from convzoo.cli import main


def test_list_and_info(capsys):
    assert main(["list", "nin*"]) == 0
    assert "nin_cifar" in capsys.readouterr().out
    assert main(["info", "nin_cifar"]) == 0
    out = capsys.readouterr().out
    assert "Network In Network" in out and "0.967" in out


def test_unknown_model_is_a_clear_error(capsys):
    assert main(["info", "nin_cifr"]) == 2
    assert "nin_cifar" in capsys.readouterr().err


def test_python_dash_m_runs_the_same_cli():
    out = subprocess.run(
        [sys.executable, "-m", "convzoo", "list", "nin*"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "nin_cifar" in out
