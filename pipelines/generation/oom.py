"""Running a diffusers call with an out-of-memory fallback.

On ``torch.cuda.OutOfMemoryError`` the call is retried (1) in smaller batches, halving down to one
image per call, then (2) once more with model CPU offload switched on; if it still does not fit, a
`GenerationOOMError` says what was tried and which settings lower memory, and the SKU fails with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from pipelines.errors import VitrineError

logger = logging.getLogger(__name__)

#: Call arguments that hold one entry per image of a batch (split when the batch is split).
BATCHED_ARGS = ("prompt", "prompt_2", "negative_prompt", "negative_prompt_2", "generator")


class GenerationOOMError(VitrineError, MemoryError):
    """The GPU ran out of memory even after the fallbacks (smaller batches, CPU offload)."""


def oom_types() -> tuple[type[BaseException], ...]:
    import torch

    return (torch.cuda.OutOfMemoryError,)


def _empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def batch_size(kwargs: dict[str, Any]) -> int:
    """The number of images a call makes: the length of its ``prompt`` list (1 for a string)."""
    prompt = kwargs.get("prompt")
    return len(prompt) if isinstance(prompt, list) else 1


def _slice(kwargs: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    out = dict(kwargs)
    for name in BATCHED_ARGS:
        if isinstance(kwargs.get(name), list):
            out[name] = kwargs[name][start:stop]
    return out


def call_with_oom_fallback(
    call: Callable[..., Any],
    kwargs: dict[str, Any],
    *,
    enable_offload: Callable[[], bool] | None = None,
    what: str = "generating",
) -> np.ndarray:
    """Run ``call(**kwargs)`` and return its images, falling back on CUDA out-of-memory errors.

    Args:
        call (`Callable`): a diffusers pipeline (or anything with its calling convention) returning an
            object whose ``images`` is an ``(N, H, W, 3)`` float array in [0, 1] (``output_type="np"``).
        kwargs (`dict`): the call's arguments. A batch is a ``prompt`` list with matching lists in
            `BATCHED_ARGS` (one ``generator`` per image); other arguments are shared by the batch.
        enable_offload (`Callable[[], bool]`, *optional*): switches on CPU offload; returns whether it did
            (``False``: already on, or not possible). Without it, no offload retry.
        what (`str`, *optional*): what the call does, for the error message.

    Returns:
        `np.ndarray`: ``(N, H, W, 3)`` float32 in [0, 1], the images in batch order.

    Raises:
        `GenerationOOMError`: still out of memory at one image per call, with offload (when possible).
    """
    oom = oom_types()
    n = batch_size(kwargs)
    try:
        return np.asarray(call(**kwargs).images)
    except oom as exc:
        first = exc
    _empty_cache()
    tried = [f"batch of {n}"]
    if n > 1:
        half = (n + 1) // 2
        logger.warning("out of GPU memory %s a batch of %d; retrying as %d + %d", what, n, half, n - half)
        parts = [call_with_oom_fallback(call, _slice(kwargs, 0, half), enable_offload=enable_offload, what=what),
                 call_with_oom_fallback(call, _slice(kwargs, half, n), enable_offload=enable_offload, what=what)]
        return np.concatenate(parts, axis=0)
    if enable_offload is not None and enable_offload():
        tried.append("CPU offload")
        logger.warning("out of GPU memory %s; retrying with model CPU offload", what)
        try:
            return np.asarray(call(**kwargs).images)
        except oom as exc:
            first = exc
            _empty_cache()
    raise GenerationOOMError(
        f"out of GPU memory while {what} (tried: {', '.join(tried)}; one image per call). Lower the memory "
        "needed: VITRINE_GEN_OFFLOAD=sequential, a quantized transformer (VITRINE_GEN_GGUF=city96/FLUX.1-dev-gguf "
        f"or VITRINE_GEN_QUANTIZE=fp8), or a smaller VITRINE_GEN_WORK_SIDE. CUDA said: {str(first)[:300]}"
    ) from first
