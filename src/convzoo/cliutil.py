"""The command-line layer every ``convzoo`` subcommand shares.

- ``option(...)`` declares a config dataclass field with its allowed values (bounds, choices, a
  device); ``validate_config`` checks an instance against them (call it from ``__post_init__``,
  so recipes, resumed configs and library callers are checked the same way).
- ``add_config_flags`` turns every field of a config dataclass into a flag (``batch_size`` ->
  ``--batch-size``; ``bool`` -> ``--x / --no-x``; ``T | None`` accepts ``none``; tuples take
  several values) whose type function enforces the same constraints while parsing, so a bad value
  is reported against the flag the user typed. Flags default to "not given" (``SUPPRESS``);
  ``given_fields`` collects the ones that were, to override a recipe or a resumed config.
- ``--model-arg KEY=VALUE`` (repeatable, values parsed as Python literals) is the one spelling of
  model config overrides; ``check_model_args`` validates names and scalar types against the
  model's registered config before anything is built.
- ``UsageError`` is the family of mistakes that are the user's: ``convzoo``'s ``main`` prints them
  as one line ``convzoo <command>: error: ...`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

# Keys of create_model that the data decides: a --model-arg may not set them.
DATA_DECIDED = {
    "num_classes": "the number of classes comes from the data",
    "in_channels": "the input channels come from the data (RGB)",
}


class UsageError(ValueError):
    """A mistake in the user's input (flag, file, config field): one line, exit status 2."""


@dataclass(frozen=True)
class Check:
    """Allowed values of one config field. ``low``/``high`` are inclusive, ``above``/``below``
    exclusive; every element of a tuple field is checked; ``None`` always passes (optional)."""

    low: float | None = None
    high: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple[Any, ...] | None = None
    device: bool = False  # a torch device name: auto, cpu, cuda, cuda:N, mps

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (a phrase such as "must be >= 1, got 0"), or None."""
        if value is None:
            return None
        if isinstance(value, tuple | list):
            return next((p for p in map(self.problem, value) if p is not None), None)
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(map(str, self.choices))}, got {value!r}"
        if self.device:
            return device_problem(str(value), check_available=False)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value != value:  # NaN passes every comparison below
                return f"must be a number, got {value}"
            fails = (
                (self.low is not None and value < self.low)
                or (self.high is not None and value > self.high)
                or (self.above is not None and value <= self.above)
                or (self.below is not None and value >= self.below)
            )
            if fails:
                return f"must be {self.describe()}, got {value}"
        return None

    def describe(self) -> str:
        lo = (f"[{_num(self.low)}", self.low) if self.low is not None else None
        lo = (f"({_num(self.above)}", self.above) if self.above is not None else lo
        hi = (f"{_num(self.high)}]", self.high) if self.high is not None else None
        hi = (f"{_num(self.below)})", self.below) if self.below is not None else hi
        if lo and hi:
            return f"in {lo[0]}, {hi[0]}"
        if lo:
            return f"{'>=' if self.low is not None else '>'} {_num(lo[1])}"
        if hi:
            return f"{'<=' if self.high is not None else '<'} {_num(hi[1])}"
        return "valid"


def _num(x: float | None) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def option(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    below: float | None = None,
    choices: Iterable[Any] | None = None,
    device: bool = False,
) -> Any:
    """A dataclass field carrying its ``Check`` (see ``validate_config``, ``add_config_flags``)."""
    check = Check(low, high, above, below, None if choices is None else tuple(choices), device)
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={"check": check}
    )


def field_check(f: dataclasses.Field[Any]) -> Check | None:
    check = f.metadata.get("check")
    return check if isinstance(check, Check) else None


def validate_config(cfg: Any) -> None:
    """Raise ``UsageError`` naming the first field of ``cfg`` whose value its ``Check`` refuses."""
    for f in dataclasses.fields(cfg):
        check = field_check(f)
        problem = check.problem(getattr(cfg, f.name)) if check is not None else None
        if problem is not None:
            raise UsageError(f"{f.name} {problem}")


# ------------------------------------------------------------------------------------ devices
def device_problem(name: str, *, check_available: bool = True) -> str | None:
    """Why ``name`` is not a usable torch device here, or None (``auto`` is always usable)."""
    if name == "auto":
        return None
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        return f"unknown device {name!r}; use auto, cpu, cuda or cuda:N"
    if dev.type not in ("cpu", "cuda", "mps"):
        return f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N"
    if not check_available:
        return None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return f"device {name!r}: no CUDA GPU is available on this machine; use cpu or auto"
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
    if dev.type == "mps" and not torch.backends.mps.is_available():
        return f"device {name!r}: MPS is not available on this machine; use cpu or auto"
    return None


def resolve_device(name: str) -> Any:
    """The ``torch.device`` for ``name`` (``auto`` = cuda when available); ``UsageError`` if the
    device does not exist on this machine."""
    import torch

    problem = device_problem(name)
    if problem is not None:
        raise UsageError(problem)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def parse_device(text: str) -> str:
    """argparse type for ``--device``: the device must exist on this machine."""
    problem = device_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


# ------------------------------------------------------------------------------ flag generation
class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``convzoo train: error: argument --x: ...``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_command(
    sub: argparse._SubParsersAction[Any],
    name: str,
    func: Callable[[argparse.Namespace], int],
    help: str,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """A subcommand parser whose errors ``main`` reports as ``<its prog>: error: ...``."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, **kwargs)
    p.set_defaults(func=func, prog=p.prog)
    return p


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _typed(kind: Callable[[str], Any], check: Check | None, optional: bool) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if optional and text.lower() == "none":
            return None
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {getattr(kind, '__name__', 'a value')}, got {text!r}"
            ) from None
        problem = check.problem(value) if check is not None else None
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


def checked(kind: Callable[[str], Any], *, optional: bool = False, **check: Any) -> Any:
    """An argparse type: ``kind(text)`` that must pass ``Check(**check)``, e.g.
    ``checked(int, low=1)`` for a positive count; ``optional`` also accepts ``none``."""
    return _typed(kind, Check(**check), optional)


def add_config_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    skip: Iterable[str] = (),
    only: Iterable[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> list[str]:
    """Add a flag per field of the dataclass ``cls`` (``only`` these, minus ``skip`` and dict
    fields); returns the field names that got one. Values are validated while parsing by each
    field's ``Check``; ``--device`` fields must name a device present on this machine.
    ``defaults`` replaces the defaults shown in the help where the command applies its own."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title or f"{cls.__name__} fields")
    skip, wanted = set(skip), None if only is None else set(only)
    added = []
    for f in dataclasses.fields(cls):
        hint, optional = _unwrap_optional(hints[f.name])
        if f.name in skip or (wanted is not None and f.name not in wanted):
            continue
        if typing.get_origin(hint) is dict or hint is dict:
            continue
        check = field_check(f)
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        if hint is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is tuple:
            elem = typing.get_args(hint)[0]
            kw.update(nargs="+", type=_typed(elem, check, False))
        elif typing.get_origin(hint) is typing.Literal:
            kw["choices"] = typing.get_args(hint)
        elif check is not None and check.device:
            kw["type"] = parse_device
        else:
            kw["type"] = _typed(hint, check, optional)
            if check is not None and check.choices is not None:
                kw["metavar"] = "{" + ",".join(map(str, check.choices)) + "}"
        if defaults is not None and f.name in defaults:
            default = defaults[f.name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        extra = f"; {check.describe()}" if check and check.describe() != "valid" else ""
        group.add_argument("--" + f.name.replace("_", "-"), help=f"default {default}{extra}", **kw)
        added.append(f.name)
    return added


def given_fields(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line (tuples from lists)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items() if k in names}


# ------------------------------------------------------------------------------ model arguments
def add_model_arg_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model config override, repeatable; VALUE is a Python literal (a bare word is a "
        "string), e.g. --model-arg drop_rate=0.2 --model-arg blocks='(3, 4, 6, 3)'",
    )


def parse_model_args(items: Sequence[str]) -> dict[str, Any]:
    """``["k=v", ...]`` -> ``{k: literal(v)}``; malformed items and repeated keys are refused."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"--model-arg expects KEY=VALUE, got {item!r}")
        if key in out:
            raise UsageError(f"--model-arg {key} is given twice")
        if key in DATA_DECIDED:
            raise UsageError(f"--model-arg {key}: {DATA_DECIDED[key]}, it is not a model argument")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text  # a bare word is a string
    return out


def check_model_args(model: str, model_args: Mapping[str, Any]) -> None:
    """Refuse keys the model's config lacks and scalar values of the wrong type, by name."""
    from convzoo.registry import get_entry

    config = get_entry(model).config
    fields = {f.name: f for f in dataclasses.fields(config)}
    hints = typing.get_type_hints(type(config))
    for key, value in model_args.items():
        if key in DATA_DECIDED:
            raise UsageError(f"--model-arg {key}: {DATA_DECIDED[key]}, it is not a model argument")
        if key not in fields:
            raise UsageError(
                f"--model-arg {key}: {model} has no such config field; valid: {', '.join(fields)}"
            )
        problem = scalar_type_problem(value, hints[key])
        if problem is not None:
            raise UsageError(f"--model-arg {key}={value!r}: {problem}")


def scalar_type_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not fit a scalar type hint (bool, int, float, str, optional), or None;
    structured hints (tuples of rows, callables) are left to the model's own checks."""
    base, optional = _unwrap_optional(hint)
    if value is None:
        return None if optional else f"expects {getattr(base, '__name__', base)}, got None"
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif base is str:
        ok = isinstance(value, str)
    else:
        return None
    return None if ok else f"expects {base.__name__}, got {type(value).__name__} {value!r}"


# ------------------------------------------------------------------------------------ errors
def one_line(err: BaseException) -> str:
    """The user-facing text of an error, on one line."""
    if isinstance(err, OSError) and err.strerror:
        where = err.filename if err.filename is not None else ""
        text = f"{err.strerror}: {where}" if where else err.strerror
    else:
        text = str(err) or type(err).__name__
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def print_error(prog: str, err: BaseException) -> None:
    print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
