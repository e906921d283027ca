"""Speed tricks of evaluation and training (BN folding, the channels-last memory format), used only where a model
runs identically with them: each is tried once on a copy with a real batch, and dropped with a warning naming why if
the model fails with it (user code with ``.view`` or in-place reshapes) or its outputs change beyond float rounding."""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from amc.pruning.fold import fold_bn

log = logging.getLogger(__name__)


def runs_identically(model: nn.Module, trial: nn.Module, images: torch.Tensor, what: str) -> bool:
    """``trial`` (a variant of ``model``) gives ``model``'s outputs on ``images``; else a warning ``<what> off``."""
    with torch.no_grad():
        reference = model(images.contiguous())
        try:
            out = trial(images)
        except Exception as e:  # noqa: BLE001  (user models may do anything in forward)
            log.warning("%s off: %s fails with it (%s: %s)", what, type(model).__name__, type(e).__name__,
                        str(e).splitlines()[0][:160])
            return False
    scale = float(reference.abs().max()) or 1.0
    if out.shape != reference.shape or not torch.allclose(out, reference, rtol=1e-3, atol=1e-4 * scale):
        log.warning("%s off: it changes %s's outputs beyond float rounding", what, type(model).__name__)
        return False
    return True


def channels_last_works(model: nn.Module, images: torch.Tensor) -> bool:
    """The model (in eval mode, a copy) in the channels-last memory format, fed a channels-last batch, gives its
    NCHW outputs."""
    trial = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    try:
        return runs_identically(model, trial, images.contiguous(memory_format=torch.channels_last), "channels_last")
    finally:
        model.train(was_training)


def check_fast_paths(model: nn.Module, images: torch.Tensor, *, fold_pairs: list[tuple[str, str]],
                     channels_last: bool) -> tuple[list[tuple[str, str]], bool]:
    """The evaluation tricks an eval-mode ``model`` runs identically with, tried on ``images`` (an ordinary NCHW
    batch): returns the (BN fold pairs, channels_last) to use."""
    if fold_pairs and not runs_identically(model, fold_bn(copy.deepcopy(model), fold_pairs), images, "BN folding"):
        fold_pairs = []
    if channels_last and not channels_last_works(model, images):
        channels_last = False
    return fold_pairs, channels_last


def evaluation_copy(model: nn.Module, *, fold_pairs: list[tuple[str, str]], channels_last: bool) -> nn.Module:
    """``model`` (eval mode) as it evaluates fastest: a copy with BN folded into the ``fold_pairs`` convs and in the
    channels-last format; ``model`` itself when neither applies. Use the settings :func:`check_fast_paths` returned
    for this model (or the original a pruned copy came from)."""
    if not fold_pairs and not channels_last:
        return model
    fast = copy.deepcopy(model).eval()
    if fold_pairs:
        fold_bn(fast, fold_pairs)
    if channels_last:
        fast.to(memory_format=torch.channels_last)
    return fast
