"""``torch.compile`` for inference that never falls back to eager without saying so.

Two ways a compiled model silently runs eager:

- every convzoo model shares ``ZooModel.forward``, and dynamo keeps its compiled graphs on the
  code object of the frame it compiles. Each further model (or batch size) is one more entry on
  the same code object; past ``recompile_limit`` (8) dynamo stops compiling that code and runs
  it eagerly from then on, with only a log line;
- a graph break splits the model and runs the pieces between graphs in Python.

``compile_inference`` guards against both: the compiled frame is a wrapper whose code object is
a fresh copy per model (so models never share cache entries), compiled with ``fullgraph=True``
(a break or a hit limit raises instead of running eager). ``CompiledModel`` counts the graphs
dynamo produced on each first call at a new shape, so a report can show that compilation
happened. On the CPU it compiles with freezing (weights as constants: oneDNN prepacks them),
which is for inference only.
"""

from __future__ import annotations

import contextlib
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["CompileSettings", "CompiledModel", "compile_inference"]


@dataclass(frozen=True)
class CompileSettings:
    freezing: bool = True  # CPU only: weights as constants, oneDNN weight prepacking
    cpp_wrapper: bool = False  # inductor's C++ wrapper instead of the Python one (CPU)
    max_shapes: int = 8  # compiled input shapes kept per model before it is an error
    backend: str = "inductor"  # torch.compile backend ("eager": trace only, for tests)

    def inductor_options(self, device: torch.device) -> dict[str, bool]:
        if device.type != "cpu":
            return {}
        return {"freezing": self.freezing, "cpp_wrapper": self.cpp_wrapper}


def _own_code(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """``model(x)`` behind a function whose code object belongs to this model alone."""

    def call(x: Tensor) -> Tensor:
        return model(x)

    code = call.__code__.replace()  # a new code object: dynamo's cache lives on it
    return types.FunctionType(code, call.__globals__, call.__name__, None, call.__closure__)


def _unique_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@dataclass
class CompiledModel:
    """A model compiled for inference at static shapes; call it like the model."""

    model: nn.Module
    device: torch.device
    settings: CompileSettings
    compile_s: dict[tuple[int, ...], float] = field(default_factory=dict)  # per input shape
    graphs: dict[tuple[int, ...], int] = field(default_factory=dict)
    _fn: Callable[[Tensor], Tensor] | None = None

    def __post_init__(self) -> None:
        self._fn = torch.compile(
            _own_code(self.model), backend=self.settings.backend, dynamic=False, fullgraph=True
        )

    @contextlib.contextmanager
    def _config(self) -> Iterator[None]:
        import torch._inductor.config as inductor_config

        limit = max(8, self.settings.max_shapes)
        with (
            torch._dynamo.config.patch(recompile_limit=limit, fail_on_recompile_limit_hit=True),
            inductor_config.patch(self.settings.inductor_options(self.device)),
        ):
            yield

    def __call__(self, x: Tensor) -> Tensor:
        assert self._fn is not None
        shape = tuple(x.shape)
        with self._config():
            if shape in self.compile_s:
                return self._fn(x)
            before, start = _unique_graphs(), time.perf_counter()
            out = self._fn(x)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.compile_s[shape] = time.perf_counter() - start
            self.graphs[shape] = _unique_graphs() - before
        if self.graphs[shape] < 1:
            # fullgraph=True should make this impossible; checked so a change in dynamo's
            # behaviour shows up as an error, not as eager timings labelled "compiled".
            raise RuntimeError(f"torch.compile produced no graph for input {shape}: it ran eager")
        return out


def compile_inference(
    model: nn.Module, device: torch.device | str = "cpu", settings: CompileSettings | None = None
) -> CompiledModel:
    """``model`` (eval mode, on ``device``) compiled for inference; compilation happens on the
    first call at each input shape, and raises rather than running eager."""
    return CompiledModel(model.eval(), torch.device(device), settings or CompileSettings())
