"""Runtimes side by side: every runtime's outputs match eager, int8 stays close to fp32, a
missing optional runtime is one clear line, and compiled models never run eager silently."""

from __future__ import annotations

import importlib
import json

import onnx
import pytest
import torch
from torch import nn

from conftest import widest_int8_weight
from convzoo.bench.compiled import CompileSettings, compile_inference
from convzoo.bench.fast import CLOSE, RUNOFF, TRIAL, pick
from convzoo.bench.quantize import (
    calibration_images,
    has_vnni,
    quantize_onnx,
    quantize_openvino,
)
from convzoo.bench.runner import BenchConfig, bench_model, registered_spec
from convzoo.bench.runtimes import (
    Artifacts,
    OpenVinoEngine,
    OrtEngine,
    RuntimeOptions,
    RuntimeUnavailable,
    prepare_engine,
)
from convzoo.cli import main
from convzoo.interop.export import export_onnx

QUICK = {"warmup": 1, "repeats": 2, "min_repeat_s": 0.001, "threads": 1}
ALL = ("eager", "compiled", "onnxruntime", "openvino", "onnxruntime-int8", "openvino-int8")


@pytest.fixture(scope="module")
def side_by_side():
    """Tiny MobileNet v2 (depthwise convs, BN, residuals) on every runtime and the fast path."""
    cfg = BenchConfig(batch_sizes=(2,), runtimes=ALL, fast=True, **QUICK)
    return bench_model(registered_spec("mobilenet_v2", tiny=True), cfg)


def test_every_runtime_matches_eager(side_by_side):
    cells = {b["runtime"]: b for b in side_by_side["batches"]}
    assert list(cells) == [*ALL, "fast"] and not side_by_side["errors"]
    for runtime, cell in cells.items():
        assert isinstance(cell["infer_ms_per_image"], float), (runtime, cell)
        assert cell["settings"]["engine"], runtime
        # float32 engines agree to rounding; int8 is checked against fp32 in its own test
        bound = 0.5 if runtime.endswith("-int8") else 1e-3
        assert cell["max_abs_diff_vs_eager"] <= bound, (runtime, cell["max_abs_diff_vs_eager"])
    assert cells["compiled"]["settings"]["graphs_compiled"] >= 1
    assert cells["compiled"]["compile_s"] > 0
    assert cells["onnxruntime"]["settings"]["intra_op_threads"] == 1
    assert cells["openvino"]["settings"]["performance_hint"] == "LATENCY"
    q = cells["onnxruntime-int8"]["settings"]
    assert q["size_mb_int8"] < q["size_mb_fp32"] and q["calibration_images"] == 64
    # each runtime's int8 comes from its own quantizer: OpenVINO's is NNCF, written as IR
    assert q["quantizer"].startswith("onnxruntime") and q["model_file"].endswith(".onnx")
    o = cells["openvino-int8"]["settings"]
    assert o["quantizer"].startswith("nncf") and o["model_file"].endswith(".xml")
    assert o["calibration_images"] == 64


def test_fast_path_records_its_trial_and_picks_the_fastest(side_by_side):
    fast = next(b for b in side_by_side["batches"] if b["runtime"] == "fast")["settings"]
    trial = fast["trial_ms_per_batch"]
    assert set(trial) == {"compiled", "onnxruntime", "openvino"}
    runoff = fast.get("trial_runoff")
    if runoff is None:
        assert fast["chosen"] == min(trial, key=trial.__getitem__)
    else:  # the two fastest were close: the choice is the faster over all their rounds
        pair = sorted(trial, key=trial.__getitem__)[:2]
        assert sorted(runoff["between"]) == sorted(pair)
        assert fast["chosen"] == min(pair, key=lambda n: runoff[f"{n}_ms"])
        assert runoff["rounds"] == TRIAL["repeats"] + RUNOFF["repeats"]
    json.dumps(fast)  # the report stores it


def test_fast_trial_runs_off_only_between_the_two_fastest_when_they_are_close():
    reruns: list[list[str]] = []

    def rerun(names: list[str]) -> dict[str, list[float]]:
        reruns.append(names)
        # the longer run-off shows b (second after the short trial) to be the faster
        return {"a": [1.10] * 10, "b": [0.95] * 10}

    clear = {"a": [1.0] * 5, "b": [1.5] * 5, "c": [3.0] * 5}
    assert pick(clear, rerun) == ("a", {}) and reruns == []
    close = {"a": [1.0] * 5, "b": [1.0 + CLOSE / 2] * 5, "c": [3.0] * 5}
    chosen, runoff = pick(close, rerun)
    assert reruns == [["a", "b"]]  # the slow third candidate is not timed again
    assert chosen == "b" and runoff["between"] == ["a", "b"] and runoff["rounds"] == 15
    assert runoff["b_ms"] < runoff["a_ms"]
    assert pick({"a": [1.0]}, rerun) == ("a", {})


def test_onnx_int8_weight_range_follows_the_cpu_unless_asked(tmp_path):
    """7-bit weights (|w| <= 64) where asked or where the CPU lacks VNNI, the full 8-bit range
    where asked or where it has VNNI; the record says which and why."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4)).eval()
    calib = calibration_images(size=8, count=16)
    model(calib[:1])
    export_onnx(model, tmp_path / "m.onnx", calib[:1])

    ranges = {}
    for asked in (True, False, None):
        out = tmp_path / f"q-{asked}.onnx"
        info = quantize_onnx(tmp_path / "m.onnx", out, calib, reduce_range=asked)
        ranges[asked] = widest_int8_weight(out)
        seven = asked if asked is not None else not has_vnni()
        assert info["weight_range"].startswith("7-bit" if seven else "8-bit"), info
        assert ("asked" in info["weight_range"]) == (asked is not None)
    assert ranges[True] <= 64 < ranges[False] <= 127
    assert ranges[None] == ranges[not has_vnni()]


@pytest.mark.parametrize("quantizer", ["onnxruntime", "openvino"])
def test_int8_outputs_stay_close_to_fp32_on_real_images(tmp_path, quantizer):
    """Quantized on the digits by each runtime's quantizer, checked on other digits: the int8
    logits stay within a tenth of the fp32 logits' range and mostly pick the same class."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).eval()  # fmt: skip
    images = calibration_images(size=16, count=96)
    calib, check = images[:64], images[64:]
    export_onnx(model, tmp_path / "m.onnx", calib[:1])
    opts = RuntimeOptions(threads=1)
    fp32 = OrtEngine("onnxruntime", tmp_path / "m.onnx", opts).run(check)
    if quantizer == "onnxruntime":
        info = quantize_onnx(tmp_path / "m.onnx", tmp_path / "q.onnx", calib)
        int8 = OrtEngine("onnxruntime-int8", tmp_path / "q.onnx", opts).run(check)
    else:
        info = quantize_openvino(tmp_path / "m.onnx", tmp_path / "q.xml", calib)
        int8 = OpenVinoEngine("openvino-int8", tmp_path / "q.xml", opts).run(check)
    with torch.no_grad():
        want = model(check)
    assert (fp32 - want).abs().max() < 1e-4
    spread = want.max() - want.min()
    assert 0 < (int8 - want).abs().max() < 0.1 * spread  # quantized, and close
    assert (int8.argmax(1) == want.argmax(1)).float().mean() >= 0.75
    # the weights shrink; the whole file of a model this small need not (the nodes int8 adds)
    assert info["size_mb_int8"] > 0 and info["size_mb_fp32"] > 0
    assert info["calibration_images"] == 64
    if quantizer == "onnxruntime":
        weights = {n: sum(len(t.raw_data) for t in onnx.load(str(tmp_path / n)).graph.initializer)
                   for n in ("m.onnx", "q.onnx")}  # fmt: skip
        assert weights["q.onnx"] < 0.5 * weights["m.onnx"]
    else:  # the IR's conv weights are int8 constants
        import openvino as ov

        ir = ov.Core().read_model(str(tmp_path / "q.xml"))
        kinds = {op.get_output_element_type(0).get_type_name() for op in ir.get_ordered_ops()
                 if op.get_type_name() == "Constant"}  # fmt: skip
        assert "i8" in kinds, kinds
        assert sum(op.get_type_name() == "FakeQuantize" for op in ir.get_ordered_ops()) >= 2


def _without(monkeypatch, package: str) -> None:
    real = importlib.import_module

    def fake(name, *args):
        if name.split(".")[0] == package:
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)


def test_missing_runtime_cell_says_so_and_the_run_goes_on(monkeypatch, tmp_path, capsys):
    _without(monkeypatch, "onnxruntime")
    argv = [
        "bench",
        "nin_cifar",
        "--tiny",
        "--batch-sizes",
        "1",
        "--runtimes",
        "eager",
        "onnxruntime",
    ]
    argv += ["--repeats", "2", "--warmup", "1", "--min-repeat-s", "0.001", "--threads", "1"]
    assert main([*argv, "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    message = "onnxruntime is not installed: pip install 'convzoo[onnx]'"
    assert f"nin_cifar: onnxruntime: {message}" in out.splitlines()
    cells = json.loads((tmp_path / "bench.json").read_text())["models"][0]["batches"]
    assert cells[0]["runtime"] == "eager" and isinstance(cells[0]["infer_ms_per_image"], float)
    assert cells[1]["infer_ms_per_image"] == "unavailable" and cells[1]["unavailable"] == message


def test_openvino_int8_without_nncf_is_one_line(monkeypatch):
    _without(monkeypatch, "nncf")
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.randn(1, 3, 8, 8)
    opts = RuntimeOptions(threads=1, calibration=x)
    artifacts = Artifacts(model, x, opts)
    try:
        with pytest.raises(RuntimeUnavailable) as err:
            prepare_engine("openvino-int8", model, x, opts, artifacts)
        assert str(err.value) == "nncf is not installed: pip install 'convzoo[openvino]'"
    finally:
        artifacts.close()


def test_fast_path_without_optional_runtimes_uses_what_is_there(monkeypatch):
    _without(monkeypatch, "openvino")
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.randn(2, 3, 8, 8)
    opts = RuntimeOptions(threads=1, compile=CompileSettings(backend="eager"))
    artifacts = Artifacts(model, x[:1], opts)
    try:
        engine = prepare_engine("fast", model, x[:1], opts, artifacts)
        assert (engine.run(x) - model(x)).abs().max() < 1e-5
        assert engine.settings["trial_ms_per_batch"]["openvino"].startswith("unavailable")
        assert engine.settings["chosen"] in ("compiled", "onnxruntime")
    finally:
        artifacts.close()


def test_fast_int8_picks_between_the_int8_runtimes_and_records_its_trial():
    cfg = BenchConfig(batch_sizes=(2,), runtimes=("onnxruntime-int8", "fast-int8"), **QUICK)
    result = bench_model(registered_spec("nin_cifar", tiny=True), cfg)
    cells = {b["runtime"]: b for b in result["batches"]}
    assert not result["errors"] and set(cells) == {"onnxruntime-int8", "fast-int8"}
    fast = cells["fast-int8"]
    trial = fast["settings"]["trial_ms_per_batch"]
    assert set(trial) == {"onnxruntime-int8", "openvino-int8"}
    assert fast["settings"]["chosen"] in trial and isinstance(fast["infer_ms_per_image"], float)
    # the chosen engine's quantization is recorded, and its outputs are int8-close to eager
    assert fast["settings"]["calibration_images"] == 64
    assert fast["max_abs_diff_vs_eager"] <= 0.5
    json.dumps(fast["settings"])


def test_fast_int8_uses_what_is_installed_and_says_when_nothing_is(monkeypatch):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = calibration_images(size=8, count=16)
    opts = RuntimeOptions(threads=1, calibration=x)
    _without(monkeypatch, "openvino")
    artifacts = Artifacts(model, x[:1], opts)
    try:
        engine = prepare_engine("fast-int8", model, x[:1], opts, artifacts)
        assert engine.runtime == "fast-int8"
        assert (engine.run(x[:2]) - model(x[:2])).abs().max() < 0.5
        assert engine.settings["chosen"] == "onnxruntime-int8"
        assert engine.settings["trial_ms_per_batch"]["openvino-int8"].startswith("unavailable")
        _without(monkeypatch, "onnxruntime")
        with pytest.raises(RuntimeUnavailable, match=r"^no int8 runtime is installed: pip "):
            prepare_engine("fast-int8", model, x[:1], opts, artifacts)
    finally:
        artifacts.close()


class Shared(nn.Module):
    """Models of one class share ``forward``'s code object, as every ZooModel does."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x).relu()
        return x


def test_compiling_many_models_never_falls_back_to_eager():
    """Twelve structurally different models in one process (dynamo's limit is 8 per code
    object): each is compiled into its own graph and reproduces eager."""
    x = torch.randn(2, 4)
    for depth in range(1, 13):
        model = Shared(depth).eval()
        compiled = compile_inference(model, settings=CompileSettings(backend="eager"))
        with torch.no_grad():
            assert torch.allclose(compiled(x), model(x))
        assert compiled.graphs[(2, 4)] == 1, depth


def test_too_many_shapes_raise_instead_of_running_eager():
    model = Shared(2).eval()
    compiled = compile_inference(model, settings=CompileSettings(backend="eager", max_shapes=8))
    with torch.no_grad():
        for batch in range(1, 9):
            compiled(torch.randn(batch, 4))
        with pytest.raises(Exception, match=r"(?i)recompile"):
            compiled(torch.randn(9, 4))


def _small_convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    ).eval()  # fmt: skip


def test_dtype_reaches_openvino_as_its_precision_hint_and_the_cell_says_what_ran(tmp_path):
    """Under --dtype bfloat16 OpenVINO gets the bf16 hint and records the precision it compiled
    to: where that is bf16 the outputs really are rounded (not the f32 ones), and close to them;
    where the CPU lacks bf16 the plugin keeps f32 and the outputs are f32's."""
    model = _small_convnet()
    x = calibration_images(size=16, count=4)
    export_onnx(model, tmp_path / "m.onnx", x[:1])
    f32 = OpenVinoEngine("openvino", tmp_path / "m.onnx", RuntimeOptions(threads=1))
    bf16 = OpenVinoEngine("openvino", tmp_path / "m.onnx",
                          RuntimeOptions(threads=1, dtype="bfloat16"))  # fmt: skip
    want, got = f32.run(x), bf16.run(x)
    assert f32.settings["inference_precision_hint"] == "f32"
    assert f32.settings["inference_precision"] == "f32"
    assert bf16.settings["inference_precision_hint"] == "bf16"
    ran = bf16.settings["inference_precision"]
    assert ran in ("bf16", "f32"), ran
    if ran == "bf16":
        spread = want.max() - want.min()
        assert 0 < (got - want).abs().max() < 0.05 * spread
    else:
        assert torch.equal(got, want)


def test_onnxruntime_under_another_dtype_is_unavailable_before_anything_is_exported(tmp_path):
    model = _small_convnet()
    x = calibration_images(size=16, count=4)
    opts = RuntimeOptions(threads=1, dtype="bfloat16", calibration=x)
    artifacts = Artifacts(model, x[:1], opts, tmp_path)
    for runtime in ("onnxruntime", "onnxruntime-int8"):
        with pytest.raises(RuntimeUnavailable) as err:
            prepare_engine(runtime, model, x[:1], opts, artifacts)
        assert str(err.value).startswith(f"{runtime} runs float32 only: ONNX Runtime's CPU")
        assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # refused before any export or quantization
    # the torch runtimes run under autocast and say so
    eager = prepare_engine("eager", model, x[:1], opts, artifacts)
    assert eager.settings["dtype"] == "bfloat16 (autocast)"
    with torch.no_grad():
        want = model(x)
    got = eager.run(x)
    assert 0 < (got - want).abs().max() < 0.05 * (want.max() - want.min())


def test_bench_dtype_cells_record_their_precision_and_the_fast_path_keeps_to_it():
    cfg = BenchConfig(batch_sizes=(2,), runtimes=("eager", "onnxruntime", "openvino"), fast=True,
                      dtype="bfloat16", **QUICK)  # fmt: skip
    result = bench_model(registered_spec("nin_cifar", tiny=True), cfg)
    cells = {b["runtime"]: b for b in result["batches"]}
    assert not result["errors"] and list(cells) == ["eager", "onnxruntime", "openvino", "fast"]
    assert cells["eager"]["settings"]["dtype"] == "bfloat16 (autocast)"
    assert cells["onnxruntime"]["infer_ms_per_image"] == "unavailable"
    assert "runs float32 only" in cells["onnxruntime"]["unavailable"]
    assert cells["openvino"]["settings"]["inference_precision_hint"] == "bf16"
    fast = cells["fast"]["settings"]
    assert fast["trial_ms_per_batch"]["onnxruntime"].startswith("unavailable: onnxruntime runs")
    assert fast["chosen"] in ("compiled", "openvino")
    assert fast.get("dtype") == "bfloat16 (autocast)" or fast["inference_precision_hint"] == "bf16"
