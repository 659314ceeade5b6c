"""The surface every convzoo model shares: ``stem -> stages -> neck -> head``, with input checks.

A family subclasses ``ZooModel`` and sets four modules:

- ``stem``: what runs before the first resolution stage (identity if nothing does);
- ``stages``: an ``nn.Sequential`` of the resolution stages, one element per resolution; these are
  what a backbone returns (``forward_intermediates``, ``create_model(..., features_only=True)``);
- ``neck``: what follows the last stage before pooling (final conv, norm, activation), identity
  if nothing does; the base class sets it to ``nn.Identity()``;
- ``head``: a ``ClassifierHead`` or anything with ``forward(x, pre_logits)`` and ``reset(num_classes)``.

``forward_features = neck(stages(stem(x)))`` is defined here once. A family whose paper wires its
stages other than in sequence overrides ``forward_features`` and ``forward_intermediates``
together and says why. A family whose stages share state drawn once per pass (FractalNet's
drop-path plan) sets it in ``begin_pass``, which both methods call before the stem.

Config fields with one meaning in every family (``tests/test_vocabulary.py`` checks each
registered config):

- ``drop_rate``: dropout before the classifier's last layer, on every classifier config;
- ``block_dropout``: dropout inside the blocks (Wide ResNet's between a block's two convs,
  DenseNet's after each conv, FractalNet's per block), where a paper has it;
- ``drop_path_rate``: stochastic depth / drop-path of the residual branches, on every family that
  has residual branches, and ``drop_path_mode`` typed ``DropPathMode`` (``layers/drop.py``).

``feature_info`` (channels and reduction of every stage's output) is read off a shape-only pass on
the ``meta`` device, so it costs no arithmetic and cannot disagree with what the stages compute.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call


class FeatureInfo(list):
    """One dict per returned stage: ``num_chs``, ``reduction`` (input size / map size) and
    ``module`` (the stage's name), timm's keys, with timm's accessors."""

    def channels(self) -> list[int]:
        return [f["num_chs"] for f in self]

    def reduction(self) -> list[int]:
        return [f["reduction"] for f in self]

    def module_name(self) -> list[str]:
        return [f["module"] for f in self]


class ZooModel(nn.Module):
    model_name: str  # the registered name, set by create_model
    stem: nn.Module
    stages: nn.Module
    neck: nn.Module
    head: nn.Module

    def __init__(
        self, *, in_channels: int, num_classes: int, num_features: int, min_input_size: int
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.num_features = num_features
        # Smallest height/width for which every downsampling step still has a pixel to work on.
        self.min_input_size = min_input_size
        self.neck = nn.Identity()
        # Set by as_features(): the stage indices forward() returns instead of logits.
        self.out_indices: tuple[int, ...] | None = None
        self._feature_info: FeatureInfo | None = None

    def check_input(self, x: Tensor) -> None:
        """Reject input the network cannot take, naming the problem (not a deep shape error)."""
        name = getattr(self, "model_name", type(self).__name__)
        if x.ndim != 4:
            raise ValueError(
                f"{name} expects a 4D tensor (batch, channels, height, width), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name} expects {self.in_channels} input channels, got {x.shape[1]} "
                f"(shape {tuple(x.shape)}); build it with in_channels={x.shape[1]}"
            )
        if x.shape[2] < self.min_input_size or x.shape[3] < self.min_input_size:
            raise ValueError(
                f"{name} needs input of at least {self.min_input_size}x{self.min_input_size} "
                f"pixels for its downsampling, got {x.shape[2]}x{x.shape[3]}"
            )

    # --- features -------------------------------------------------------------------------

    def begin_pass(self) -> None:
        """Runs once at the start of every pass through the stages (``forward_features``,
        ``forward_intermediates``), after the input check. Nothing by default; a family whose
        stages share per-pass state sets it here."""

    def forward_features(self, x: Tensor) -> Tensor:
        self.check_input(x)
        self.begin_pass()
        return self.neck(self.stages(self.stem(x)))

    @property
    def num_stages(self) -> int:
        return len(self.stages)  # type: ignore[arg-type]

    def _stage_indices(self, indices: int | Sequence[int] | None) -> list[int]:
        """Normalize ``indices`` (None: all stages; an int n: the last n; negative allowed)."""
        n = self.num_stages
        if indices is None:
            return list(range(n))
        if isinstance(indices, int):
            if not 1 <= indices <= n:
                raise ValueError(f"the last {indices} stages: this model has {n} stages")
            return list(range(n - indices, n))
        out = []
        for i in indices:
            if not -n <= i < n:
                raise ValueError(
                    f"stage index {i} out of range: this model has {n} stages (0..{n - 1})"
                )
            out.append(i % n)
        if len(set(out)) != len(out) or out != sorted(out):
            raise ValueError(f"stage indices must be distinct and increasing, got {list(indices)}")
        return out

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """The output of each stage in ``indices`` (all by default), as timm's method of the name.

        Returns ``(forward_features(x), intermediates)``, or only the intermediates, in which case
        the stages after the last one asked for are not run.
        """
        self.check_input(x)
        take = self._stage_indices(indices)
        self.begin_pass()
        last = take[-1] if intermediates_only else self.num_stages - 1
        feats = []
        x = self.stem(x)
        for i, stage in enumerate(self.stages):  # type: ignore[arg-type]
            x = stage(x)
            if i in take:
                feats.append(x)
            if i == last:
                break
        if intermediates_only:
            return feats
        return self.neck(x), feats

    @property
    def feature_info(self) -> FeatureInfo:
        """Channels and reduction of every stage (or, on a features model, of each one returned)."""
        if self._feature_info is None:
            self._feature_info = self._probe_feature_info()
        if self.out_indices is None:
            return self._feature_info
        return FeatureInfo(self._feature_info[i] for i in self.out_indices)

    def _probe_feature_info(self) -> FeatureInfo:
        # A shape-only pass: parameters and buffers replaced by meta tensors, the input too. The
        # size is a multiple of 64 so that stride-32 stages divide it; reductions are rounded to
        # powers of two since ceil-mode pools and unpadded convs leave a pixel or two over.
        size = 64 * math.ceil(max(self.min_input_size, 224) / 64)
        x = torch.empty(1, self.in_channels, size, size, device="meta")
        tensors = {
            f"model.{k}": torch.empty_like(v, device="meta")
            for k, v in itertools.chain(self.named_parameters(), self.named_buffers())
        }
        saved = self.out_indices, self.training
        # functional_call restores a module shared under several names (HyperNet's generator)
        # once per name and can leave it on meta; every name is put back here.
        originals = dict(
            itertools.chain(
                self.named_parameters(remove_duplicate=False),
                self.named_buffers(remove_duplicate=False),
            )
        )
        self.out_indices = None
        try:
            self.eval()
            feats = functional_call(_Intermediates(self), tensors, (x,), strict=False)
        finally:
            self.out_indices = saved[0]
            self.train(saved[1])
            for name, tensor in originals.items():
                prefix, _, attr = name.rpartition(".")
                owner = self.get_submodule(prefix)
                store = owner._parameters if attr in owner._parameters else owner._buffers
                store[attr] = tensor
        info = FeatureInfo()
        for i, f in enumerate(feats):
            reduction = 2 ** round(math.log2(size / f.shape[-1]))
            info.append(
                {"num_chs": int(f.shape[1]), "reduction": reduction, "module": f"stages.{i}"}
            )
        return info

    def as_features(self, out_indices: int | Sequence[int] | None = None) -> ZooModel:
        """Make this model a backbone, in place: ``forward`` returns the maps of ``out_indices``
        (all stages by default); neck, head and the stages after the last index are dropped.

        State-dict keys stay those of the classifier (``stem.*``, ``stages.*``), so a classifier's
        weights load into a backbone with ``strict=False``.
        """
        take = self._stage_indices(out_indices)
        info = self.feature_info  # probed on the whole model, before anything is dropped
        if isinstance(self.stages, nn.Sequential):
            self.stages = self.stages[: take[-1] + 1]
        self.neck = nn.Identity()
        self.head = nn.Identity()
        self.num_classes = 0
        self.out_indices = tuple(take)
        self._feature_info = info
        return self

    # --- classifier -----------------------------------------------------------------------

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Any:
        if self.out_indices is not None:
            return self.forward_intermediates(x, self.out_indices, intermediates_only=True)
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        if self.out_indices is not None:
            raise ValueError("a features_only model has no classifier to reset")
        self.head.reset(num_classes)
        self.num_classes = num_classes


class _Intermediates(nn.Module):
    """``forward`` is ``model.forward_intermediates``: what ``functional_call`` needs to probe it."""

    def __init__(self, model: ZooModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> list[Tensor]:
        out = self.model.forward_intermediates(x, intermediates_only=True)
        assert isinstance(out, list)
        return out
