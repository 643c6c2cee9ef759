"""Deterministic GPU kernels for generation, so a re-render of the same SKU gives the same bytes.

Review carries an approved output over to a re-render only when its bytes did not change; on CUDA that
needs PyTorch's deterministic algorithms, cuDNN without autotuning, and a fixed cuBLAS workspace
(``CUBLAS_WORKSPACE_CONFIG``, read when cuBLAS initialises: it must be set before the first CUDA matmul).
`configure_determinism` sets them once per process on CUDA (the engine puts the workspace setting in the
environment first, through `pipelines.settings`); what was set is recorded with each output.
"""

from __future__ import annotations

import threading
from typing import Any

#: The cuBLAS workspace setting PyTorch documents for deterministic results.
CUBLAS_WORKSPACE = ":4096:8"
_lock = threading.Lock()
_state: dict[str, Any] | None = None


def configure_determinism(device: str, *, force: bool = False, cublas_workspace: str | None = None) -> dict[str, Any]:
    """On a CUDA ``device``: ``torch.use_deterministic_algorithms(True, warn_only=True)`` (an op without a
    deterministic kernel warns instead of failing the SKU), ``cudnn.deterministic = True``,
    ``cudnn.benchmark = False``; records ``cublas_workspace``. Other devices run
    deterministically already and are left alone.

    Args:
        device (`str`): the generation device (``cuda``, ``cuda:N``, ``cpu``, ``mps``).
        force (`bool`, *optional*, defaults to `False`): apply even when ``device`` is not CUDA (tests).
        cublas_workspace (`str`, *optional*): the ``CUBLAS_WORKSPACE_CONFIG`` in effect, recorded: the caller
            sets it before CUDA starts (`pipelines.settings.cublas_workspace_config(CUBLAS_WORKSPACE)`,
            which keeps a value already set).

    Returns:
        `dict`: ``{"applied", "deterministic_algorithms", "cudnn_deterministic", "cudnn_benchmark",
        "cublas_workspace_config", "cuda_initialised_before"}`` for the manifest
        (``cuda_initialised_before``: cuBLAS may have started before the workspace setting).
    """
    global _state
    import torch

    with _lock:
        if not (device.startswith("cuda") or force):
            return {"applied": False, "reason": f"{device}: deterministic without extra settings"}
        if _state is not None and not force:
            return dict(_state)
        before = bool(torch.cuda.is_available() and torch.cuda.is_initialized())
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        _state = {
            "applied": True,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cublas_workspace_config": cublas_workspace,
            "cuda_initialised_before": before,
        }
        return dict(_state)
