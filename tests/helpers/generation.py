"""Shared by the tests/test_generation*.py modules: the tiny FLUX/SDXL models, built once per process.

A session fixture in one module is not visible from another (and tests/conftest.py is shared with other
features), so each generation test module wraps `tiny_model_root` in its own fixture; the models are
written once per pytest process into a temporary folder removed at exit.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

#: Small catalog sizes keep the end-to-end tests fast (the tiny models generate at 32/64 px anyway).
SMALL = dict(canvas=256, lifestyle_size=(192, 240))
#: ``work_side`` 32 (the tiny models' native side) keeps the tiny runs at 32² working pixels; the default
#: native-resolution working size (up to 1.2x below the output's) is tested on its own
#: (tests/generation/test_generation_runtime.py), as it makes every tiny run ~30x more pixels.
FAST_ENV = {"steps": 2, "seam_steps": 2, "device": "cpu", "work_side": 32}


@functools.lru_cache(maxsize=1)
def tiny_model_root() -> Path:
    """``vitrine dev tiny-models`` for the flux and sdxl families, once per process."""
    from pipelines.dev_models.tiny import build_tiny_models

    root = Path(tempfile.mkdtemp(prefix="vitrine-tiny-gen-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    build_tiny_models(root, ["flux", "sdxl"])
    return root


def fast_settings(**changes):
    """`GenerationSettings` for tests: CPU, 2 steps (override with ``changes``)."""
    from pipelines.generation.settings import GenerationSettings

    return GenerationSettings(**{**FAST_ENV, **changes})


def make_product(root: Path, sku: str, rgb: np.ndarray, spec: str, name: str = "front.png") -> Path:
    from pipelines.imageio import save_image

    d = root / sku
    d.mkdir(parents=True, exist_ok=True)
    save_image(d / name, rgb)
    (d / "product.yaml").write_text(spec, encoding="utf-8")
    return d


def link_model_root(src: Path, dest: Path, *, without: tuple[str, ...] = ()) -> Path:
    """A model root that links every repo of ``src`` except the repo ids in ``without``."""
    for org in src.iterdir():
        for repo in org.iterdir():
            rid = f"{org.name}/{repo.name}"
            if rid in without:
                continue
            (dest / org.name).mkdir(parents=True, exist_ok=True)
            (dest / rid).symlink_to(repo, target_is_directory=True)
    return dest
