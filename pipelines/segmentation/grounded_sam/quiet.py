"""Loading GroundingDINO / SAM quietly: shared by the model loaders and the original packages' builders."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """No progress bars from transformers, no deprecation chatter from the original packages' imports."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*meshgrid.*", category=UserWarning)
            yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()
