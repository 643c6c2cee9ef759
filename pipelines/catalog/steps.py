"""Render steps: what turns one kind of SKU into the parts of its catalog entry.

`pipelines.catalog.render` owns a render's mechanics (locks, staging, the content hash, the manifest, the
commit); a `RenderStep` owns only what is particular to a kind of SKU. It reads the SKU's photos, writes its
work files and outputs through the job's `EntryWriter` (which checks each output's pixel guarantee before
writing it) and returns the `EntryParts` of the manifest, every record built with `pipelines.catalog.manifest`.
The steps are `pipelines.catalog.product_render.ProductStep` (product photos on white and in scenes) and
`pipelines.catalog.tryon_render.TryOnStep` (a person photo plus garment photos); a new kind of SKU is a new
step in `pipelines.catalog.render.RENDER_STEPS`. An edit (`pipelines.catalog.edits`) is the same idea for
one new output of an existing entry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipelines.catalog.manifest import spec_input_record
from pipelines.catalog.options import RenderOptions
from pipelines.catalog.workfiles import EntryWriter
from pipelines.engines.bundle import Engine
from pipelines.imageio import LoadedImage, load_image
from pipelines.product import Product


@dataclass
class RenderJob:
    """What a render step works with.

    Attributes:
        product (`Product`): the SKU (a snapshot of its folder, with the batch's overrides applied).
        writer (`EntryWriter`): writes into the entry's staging folder.
        engine (`Engine`): the batch's engine.
        options (`RenderOptions`): the render parameters.
        params (`dict`): `pipelines.catalog.render.render_params` (recorded as ``parameters``).
    """

    product: Product
    writer: EntryWriter
    engine: Engine
    options: RenderOptions
    params: dict[str, Any]

    @property
    def out(self) -> Path:
        return self.writer.folder


@dataclass
class EntryParts:
    """The sections of a manifest a render step fills (`pipelines.catalog.manifest.build_manifest`)."""

    inputs: list[dict[str, Any]]
    subjects: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    quality: dict[str, Any]
    parameters: dict[str, Any]
    models: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)


class RenderStep(Protocol):
    """One kind of SKU (see the module's docstring)."""

    name: str

    def accepts(self, product: Product) -> bool:
        """Whether ``product`` is a SKU of this kind."""
        ...

    def render(self, job: RenderJob) -> EntryParts:
        """Write the entry's files through ``job.writer``; return the manifest's parts."""
        ...


class Timer:
    """Seconds per stage, summed over a render (``timings`` of the manifest)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def add(self, name: str, start: float) -> None:
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 4)

    def add_seconds(self, name: str, seconds: float) -> None:
        self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 4)


def unique_stems(images: list[Path]) -> dict[str, str]:
    """File name -> stem used to name its work files and outputs, unique even without case.

    The stem is the file's own (``back.jpg`` -> ``back``) unless two images share it (``front.jpg`` and
    ``front.png``), which would make them overwrite each other's files: then the suffix is kept
    (``front-jpg``, ``front-png``), and a number added if that is taken too.
    """
    counts: dict[str, int] = {}
    for p in images:
        counts[p.stem.casefold()] = counts.get(p.stem.casefold(), 0) + 1
    used: set[str] = set()
    stems: dict[str, str] = {}
    for p in images:
        stem = p.stem if counts[p.stem.casefold()] == 1 else f"{p.stem}-{p.suffix.lstrip('.').lower()}"
        base, n = stem, 2
        while stem.casefold() in used:
            stem, n = f"{base}-{n}", n + 1
        used.add(stem.casefold())
        stems[p.name] = stem
    return stems


def load_inputs(job: RenderJob, paths: list[Path], roles: dict[str, str]
                ) -> tuple[list[dict[str, Any]], dict[str, LoadedImage], dict[str, str]]:
    """Load and normalise the photos ``paths`` (EXIF, sRGB, 8-bit), keeping each normalised copy as a work file.

    Args:
        job (`RenderJob`): the render.
        paths (`list[Path]`): the photos, in the order they are recorded.
        roles (`dict[str, str]`): file name -> its ``role`` in ``inputs[]``.

    Returns:
        `tuple`: (``inputs[]`` with ``product.yaml`` last when there is one, file name -> `LoadedImage`,
        file name -> its unique stem).
    """
    product = job.product
    stems = unique_stems(product.images)
    inputs, loaded = [], {}
    for path in paths:
        img = load_image(path, max_side=job.options.max_input_side)
        loaded[path.name] = img
        inputs.append(job.writer.input(path, img, stems[path.name], roles[path.name]))
    if product.spec_path is not None:
        inputs.append(spec_input_record(product.spec_path))
    return inputs, loaded, stems
