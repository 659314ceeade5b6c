"""Small arithmetic and argument-checking helpers shared by the families."""

from __future__ import annotations


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never going below 90% of it.

    The rule of the MobileNet v2 / EfficientNet / MnasNet releases (their ``_make_divisible``).
    """
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def check_probability(name: str, p: float) -> None:
    """A dropout or drop-path probability: ``p`` in [0, 1) (1 would drop everything)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p}")
