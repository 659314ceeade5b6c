"""torchvision ResNet / ResNeXt / wide ResNet state dicts -> convzoo ``ResNet``.

torchvision names the stem ``conv1``/``bn1``, the stages ``layer1..4`` and each conv/norm pair of a
block ``convN``/``bnN``; ours nests the pair in a ``ConvNormAct`` (``convN.0`` conv, ``convN.1``
norm). The projection shortcut is ``downsample.0``/``downsample.1`` in both.
"""

from __future__ import annotations

TORCHVISION_RULES: list[tuple[str, str]] = [
    (r"^conv1\.", "stem.0.0."),
    (r"^bn1\.", "stem.0.1."),
    *[(rf"^layer{i}\.", f"stages.{i - 1}.") for i in range(1, 5)],
    (r"\.conv(\d)\.", r".conv\1.0."),
    (r"\.bn(\d)\.", r".conv\1.1."),
    (r"^fc\.", "head.fc."),
]
