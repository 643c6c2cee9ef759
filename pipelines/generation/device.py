"""Which torch device a generation runs on (``VITRINE_GEN_DEVICE``: ``auto``, ``cuda``, ``cuda:N``, ``mps``, ``cpu``)."""

from __future__ import annotations

from pipelines.errors import InputError


def resolve_device(setting: str = "auto") -> str:
    """``auto`` → ``cuda`` when a CUDA device is present, else ``mps`` when present, else ``cpu``.

    Raises:
        `InputError`: a CUDA/MPS device was asked for and is not there.
    """
    import torch

    if setting == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {setting!r} asked for but no CUDA device is available", key="VITRINE_GEN_DEVICE")
    return setting
