"""torchvision DenseNet state dicts -> convzoo ``DenseNet``.

torchvision keeps everything but the classifier in ``features``: ``conv0``/``norm0`` (stem),
``denseblockB.denselayerL`` (both 1-based), ``transitionB`` after block B, ``norm5``. Ours opens
stage B (0-based) with the transition that follows torchvision's block B, then the dense block.
A dense layer's ``norm1, conv1, norm2, conv2`` have the same names in both.
"""

from __future__ import annotations

# The deepest torchvision block has 48 layers (DenseNet-201); 128 leaves room for custom configs.
_MAX_LAYERS = 128

TORCHVISION_RULES: list[tuple[str, str]] = [
    (r"^features\.conv0\.", "stem.conv."),
    (r"^features\.norm0\.", "stem.norm."),
    (r"^features\.norm5\.", "neck.norm."),
    (r"^classifier\.", "head.fc."),
    *[(rf"^features\.denseblock{b}\.", f"stages.{b - 1}.block.") for b in range(1, 10)],
    *[(rf"^features\.transition{b}\.", f"stages.{b}.transition.") for b in range(1, 10)],
    # The trailing dot keeps denselayer1 from matching denselayer10.
    *[(rf"\.denselayer{i}\.", f".{i - 1}.") for i in range(1, _MAX_LAYERS + 1)],
]
