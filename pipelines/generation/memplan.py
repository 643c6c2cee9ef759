"""A GPU memory plan for the generative engines: where each model lives, read from weight-file headers.

Nothing is loaded to plan: model sizes come from the safetensors headers (the JSON at the start of each
file: every tensor's dtype and shape) or from the GGUF metadata (`gguf.GGUFReader` memory-maps the file
and reads its tensor table only). The planner then chooses, per model, one of

- ``resident``: on the GPU for the whole batch (fastest);
- ``model-offload``: in CPU memory, moved to the GPU as a whole when it runs, and moved back when another
  offloaded *group* runs (a denoiser and its ControlNets are one group; the text encoders another);
- ``sequential-offload``: in CPU memory, moved to the GPU layer by layer (slowest, least memory);

and reports quantized weights (``fp8``/``int8`` with torchao, ``nf4`` with bitsandbytes, ``GGUF``) at their
quantized size when the settings ask for them. Components a profile ``shares`` with its base (the FLUX.1
T5/CLIP/VAE used by FLUX Fill and Kontext, SDXL's text encoders and VAE used by its inpainting model) are
counted and placed once.

The plan is the least frugal *level* of `LEVELS` whose estimated peak fits the budget (the GPU's free
memory, `torch.cuda.mem_get_info`, or ``--gpu-memory``). Every level computes the same numbers (offload
only moves weights), so the plan never changes an output's pixels; quantization does change them and is
therefore never chosen automatically: it is the user's setting (``VITRINE_GEN_QUANTIZE`` / ``GGUF``),
and the plan says what it would save.

`OffloadManager` applies a plan to loaded models with accelerate hooks; on an out-of-memory error at
load or run the engines free everything, re-plan one level more frugal and retry once
(`pipelines.engines.generative`), and record it in the manifest.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipelines.errors import InputError, MissingBackendError
from pipelines.generation.device import resolve_device
from pipelines.generation.modelset import resolve_model_set
from pipelines.generation.settings import GenerationSettings
from pipelines.generation.worksize import native_work_size
from pipelines.models.location import ModelNotFoundError, find, gguf_weight_file
from pipelines.models.profiles import list_profiles
from pipelines.models.single_file import part_source, read_marker

logger = logging.getLogger(__name__)

GB = 1e9
#: Bytes per element of each safetensors dtype.
SAFETENSORS_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "F4": 0.5, "F6_E2M3": 0.75,
    "F6_E3M2": 0.75,
}  # fmt: skip
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}
#: Bytes per parameter of a compute dtype (floating tensors are cast to it at load).
COMPUTE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
#: Bytes per parameter of quantized weights (nf4: 4 bits plus a float32 absmax per block of 64 = 0.5625).
QUANT_BYTES = {"fp8": 1.0, "int8": 1.0, "nf4": 0.5625}
#: The placements a model can get.
PLACEMENTS = ("resident", "model-offload", "sequential-offload")
#: Plan levels, least frugal first. Each moves more models off the GPU than the one before.
LEVELS = ("resident", "offload-secondary", "offload-text", "offload-all", "sequential")
#: Activation memory at one megapixel (batch of one) and a fixed margin (CUDA context, fragmentation):
#: estimates from diffusers' published memory figures (FLUX.1-dev with model offload peaks about 1-3 GB
#: above its 23.8 GB transformer; the 16-channel VAE decode at 1 MP takes about 3 GB).
ACTIVATION_BYTES_PER_MP = {"flux": 3.0 * GB, "sdxl": 2.5 * GB}
MARGIN_BYTES = 1.0 * GB
#: A sequentially offloaded model keeps about this many of its largest tensors on the GPU at once.
SEQUENTIAL_TENSORS = 4


# ------------------------------------------------------------------------------------------ file headers
def read_safetensors_header(path: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every tensor of a ``.safetensors`` file, from its header only (no tensor data is read).

    The format: 8 bytes little-endian header length N, then N bytes of JSON
    ``{name: {"dtype": "BF16", "shape": [...], "data_offsets": [a, b]}, "__metadata__": {...}}``.

    Returns:
        `dict[str, tuple[str, tuple[int, ...]]]`: tensor name -> (safetensors dtype, shape).

    Raises:
        `InputError`: the file is missing, too short, or its header is not the safetensors JSON (naming it).
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise InputError("not a safetensors file (shorter than its 8-byte header length)", path=path)
            (n,) = struct.unpack("<Q", head)
            if n > 100_000_000:
                raise InputError(f"not a safetensors file (header length {n} bytes)", path=path)
            raw = f.read(n)
    except OSError as exc:
        raise InputError(f"cannot read the safetensors header: {exc}", path=path) from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"the safetensors header is not JSON: {exc}", path=path) from None
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape = info["dtype"], tuple(int(s) for s in info["shape"])
        except (TypeError, KeyError, ValueError):
            raise InputError(f"tensor {name!r} has no dtype/shape in the header", path=path, key=name) from None
        if dtype not in SAFETENSORS_DTYPE_BYTES:
            raise InputError(f"tensor {name!r} has an unknown dtype {dtype!r}", path=path, key=name)
        out[name] = (dtype, shape)
    return out


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


@dataclass(frozen=True)
class WeightsSize:
    """The size of a model's weights.

    Attributes:
        params (`int`): number of elements of floating-point tensors.
        other_bytes (`int`): bytes of non-floating tensors (integer buffers), kept as stored.
        stored_bytes (`int`): bytes as stored in the files.
        max_tensor_params (`int`): elements of the largest floating tensor.
        files (`tuple[str, ...]`): the files read.
    """

    params: int
    other_bytes: int
    stored_bytes: int
    max_tensor_params: int = 0
    files: tuple[str, ...] = ()

    def at(self, bytes_per_param: float) -> int:
        """Bytes in memory when the floating tensors are held at ``bytes_per_param`` bytes each."""
        return int(self.params * bytes_per_param + self.other_bytes)


def safetensors_size(files: list[Path]) -> WeightsSize:
    """`WeightsSize` of the tensors in ``files`` (headers only)."""
    sizes = [single_file_size(path) for path in files]
    return WeightsSize(sum(s.params for s in sizes), sum(s.other_bytes for s in sizes),
                       sum(s.stored_bytes for s in sizes), max((s.max_tensor_params for s in sizes), default=0),
                       tuple(str(p) for p in files))


def gguf_size(path: str | Path) -> WeightsSize:
    """`WeightsSize` of a GGUF file from its tensor table (the data is memory-mapped, not read).

    ``stored_bytes`` is what the quantized weights take in memory (diffusers keeps GGUF weights quantized
    and dequantizes per layer); ``params`` counts their elements.

    Raises:
        `MissingBackendError`: the ``gguf`` package is not installed. `InputError`: not a GGUF file.
    """
    try:
        from gguf import GGUFReader
    except ImportError:
        raise MissingBackendError("GGUF", "pip install 'gguf>=0.10'") from None
    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read the GGUF tensor table: {exc}", path=path) from None
    params = stored = biggest = 0
    for t in reader.tensors:
        n = int(t.n_elements)
        params += n
        stored += int(t.n_bytes)
        biggest = max(biggest, n)
    return WeightsSize(params, 0, stored, biggest, (str(path),))


def weight_files(folder: Path, variant: str | None = None) -> list[Path]:
    """The ``.safetensors`` files of one model folder, each tensor counted once.

    Diffusers folders may hold the plain files and ``*.fp16.safetensors`` variants side by side (SDXL):
    the variant files are used when ``variant`` is given and present, or when they are the only ones.
    """
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.safetensors"))

    def is_variant(p: Path, v: str | None = None) -> bool:
        parts = p.name.split(".")
        return len(parts) >= 3 and (parts[-2] == v if v else parts[-2] in ("fp16", "bf16", "fp32"))

    plain = [p for p in files if not is_variant(p)]
    if variant:
        chosen = [p for p in files if is_variant(p, variant)]
        if chosen:
            return chosen
    if plain:
        return plain
    return [p for p in files if is_variant(p, "fp16")] or files


# ----------------------------------------------------------------------------------------------- the plan
@dataclass
class PlanModel:
    """One model of a plan.

    Attributes:
        id (`str`): ``repo/part`` (``black-forest-labs/FLUX.1-dev/transformer``) or the repo id.
        role (`str`): ``denoiser``, ``text``, ``vae``, ``controlnet``.
        pipeline (`str`): the pipeline role it serves first (``base``, ``fill``, ``kontext``...).
        bytes (`int`): bytes in memory at the compute dtype (or quantized).
        group (`str`): models moved to the GPU together when model-offloaded.
        secondary (`bool`): serves a pipeline other than the scene generator (seam, Kontext, refiner).
        placement (`str`): one of `PLACEMENTS`.
        quantized (`str`, *optional*): ``fp8``, ``int8``, ``nf4`` or ``gguf`` when held quantized.
        max_tensor_bytes (`int`): its largest tensor (the sequential-offload working set).
        shared_by (`list[str]`): the pipelines using it (counted once).
        source (`str`): where the size came from (``safetensors header``, ``gguf``, ``not found``).
    """

    id: str
    role: str
    pipeline: str
    bytes: int
    group: str
    secondary: bool = False
    placement: str = "resident"
    quantized: str | None = None
    max_tensor_bytes: int = 0
    shared_by: list[str] = field(default_factory=list)
    source: str = "safetensors header"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "bytes": self.bytes, "gb": round(self.bytes / GB, 2), "placement": self.placement,
                "quantized": self.quantized, "role": self.role, "group": self.group, "shared_by": self.shared_by,
                "source": self.source}


@dataclass
class MemoryPlan:
    """Where every model goes and the estimated peak GPU memory.

    Attributes:
        device (`str`): ``cuda`` (or ``cuda:N``), or ``cpu`` (no GPU: every model in CPU memory).
        gpu_memory_gb (`float`, *optional*): the GPU's total memory (``None`` on a CPU).
        budget_gb (`float`, *optional*): the memory the plan may use (free memory, or ``--gpu-memory``).
        level (`str`): one of `LEVELS` (``cpu`` on a CPU).
        peak_gb (`float`): estimated peak GPU memory: resident weights + the largest offloaded group +
            activations and margin.
        fits (`bool`): ``peak_gb <= budget_gb``.
        activations_gb (`float`): the activation and margin share of ``peak_gb``.
        models (`list[PlanModel]`).
        notes (`list[str]`): what the plan means and what would lower it further.
        retries (`list[dict]`): out-of-memory re-plans made while running (level before/after, where).
    """

    device: str
    gpu_memory_gb: float | None
    budget_gb: float | None
    level: str
    peak_gb: float
    fits: bool
    activations_gb: float
    models: list[PlanModel]
    notes: list[str] = field(default_factory=list)
    retries: list[dict[str, Any]] = field(default_factory=list)

    def placement(self, model_id: str) -> str | None:
        m = next((m for m in self.models if m.id == model_id), None)
        return m.placement if m is not None else None

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "gpu_memory_gb": self.gpu_memory_gb, "budget_gb": self.budget_gb,
                "level": self.level, "peak_gb": self.peak_gb, "fits": self.fits,
                "activations_gb": self.activations_gb, "weights_gb": round(sum(m.bytes for m in self.models) / GB, 2),
                "models": [m.to_json() for m in self.models], "notes": list(self.notes),
                "retries": list(self.retries)}

    def summary(self) -> dict[str, Any]:
        """The short form recorded with each generated output."""
        return {"level": self.level, "peak_gb": self.peak_gb, "budget_gb": self.budget_gb, "device": self.device,
                "placements": {m.id: m.placement + (f" ({m.quantized})" if m.quantized else "") for m in self.models},
                "retries": list(self.retries)}


def placements_for(models: list[PlanModel], level: str) -> list[PlanModel]:
    """Copies of ``models`` placed as ``level`` says (see `LEVELS`)."""
    if level not in LEVELS:
        raise ValueError(f"unknown plan level {level!r}; expected one of {LEVELS}")
    i = LEVELS.index(level)
    out = []
    for m in models:
        place = "resident"
        if m.secondary and m.role == "denoiser" and i >= 1:
            place = "model-offload"
        if m.role == "text" and i >= 2:
            place = "model-offload"
        if i >= 3:
            place = "model-offload"
        if i >= 4 and m.role in ("denoiser", "controlnet"):
            place = "sequential-offload"
        out.append(replace(m, placement=place, shared_by=list(m.shared_by)))
    return out


def peak_bytes(models: list[PlanModel], activations: float) -> float:
    """Resident bytes + the largest model-offloaded group + sequential working sets + ``activations``."""
    resident = sum(m.bytes for m in models if m.placement == "resident")
    groups: dict[str, int] = {}
    for m in models:
        if m.placement == "model-offload":
            groups[m.group] = groups.get(m.group, 0) + m.bytes
    seq = sum(m.max_tensor_bytes * SEQUENTIAL_TENSORS for m in models if m.placement == "sequential-offload")
    return resident + max(groups.values(), default=0) + seq + activations


def activation_bytes(family: str, megapixels: float = 1.0) -> float:
    """Estimated activation memory of one image at ``megapixels`` plus the fixed margin."""
    return ACTIVATION_BYTES_PER_MP.get(family, 3.0 * GB) * max(megapixels, 0.25) + MARGIN_BYTES


def make_plan(models: list[PlanModel], *, family: str, budget_bytes: float | None, total_bytes: float | None,
              device: str = "cuda", min_level: str = "resident", megapixels: float = 1.0) -> MemoryPlan:
    """Choose the least frugal level at or above ``min_level`` whose peak fits ``budget_bytes``.

    Args:
        models (`list[PlanModel]`): the models (see `plan_models`), placement ignored.
        family (`str`): ``flux`` or ``sdxl`` (activation estimate).
        budget_bytes (`float`, *optional*): what the plan may use; ``None`` = a CPU plan.
        total_bytes (`float`, *optional*): the GPU's total memory (reported).
        device (`str`, *optional*): the device planned for.
        min_level (`str`, *optional*, defaults to ``"resident"``): the least frugal level allowed (the
            user's ``VITRINE_GEN_OFFLOAD`` sets it: ``model`` -> ``offload-all``, ``sequential`` -> ``sequential``).
        megapixels (`float`, *optional*, defaults to 1.0): the working size of one image.

    Returns:
        `MemoryPlan`: ``fits`` is ``False`` when even ``sequential`` does not fit (the most frugal plan).
    """
    act = activation_bytes(family, megapixels)
    if budget_bytes is None:
        placed = [replace(m, placement="cpu", shared_by=list(m.shared_by)) for m in models]
        return MemoryPlan(device="cpu", gpu_memory_gb=None, budget_gb=None, level="cpu", peak_gb=0.0, fits=True,
                          activations_gb=0.0, models=placed,
                          notes=["no GPU: every model is in CPU memory (generation on a CPU takes minutes to hours per "
                                 "image at full size)"])
    start = LEVELS.index(min_level)
    chosen = None
    for level in LEVELS[start:]:
        placed = placements_for(models, level)
        peak = peak_bytes(placed, act)
        chosen = (level, placed, peak)
        if peak <= budget_bytes:
            break
    assert chosen is not None
    level, placed, peak = chosen
    plan = MemoryPlan(device=device, gpu_memory_gb=round(total_bytes / GB, 2) if total_bytes else None,
                      budget_gb=round(budget_bytes / GB, 2), level=level, peak_gb=round(peak / GB, 2),
                      fits=peak <= budget_bytes, activations_gb=round(act / GB, 2), models=placed)
    plan.notes = _notes(plan, models, act, budget_bytes)
    return plan


def more_frugal(plan: MemoryPlan, models: list[PlanModel] | None = None, *, family: str = "flux") -> MemoryPlan | None:
    """The plan one level more frugal than ``plan`` (``None`` when it is already ``sequential``)."""
    if plan.level not in LEVELS or plan.level == LEVELS[-1]:
        return None
    level = LEVELS[LEVELS.index(plan.level) + 1]
    placed = placements_for(models or plan.models, level)
    act = plan.activations_gb * GB
    peak = peak_bytes(placed, act)
    budget = (plan.budget_gb or 0) * GB
    out = MemoryPlan(device=plan.device, gpu_memory_gb=plan.gpu_memory_gb, budget_gb=plan.budget_gb, level=level,
                     peak_gb=round(peak / GB, 2), fits=peak <= budget, activations_gb=plan.activations_gb,
                     models=placed, retries=list(plan.retries))
    out.notes = _notes(out, placed, act, budget)
    return out


def _notes(plan: MemoryPlan, models: list[PlanModel], act: float, budget: float) -> list[str]:
    notes = {
        "resident": "every model stays on the GPU",
        "offload-secondary": "the seam/Kontext/refiner denoisers are moved to the GPU only when they run",
        "offload-text": "the text encoders and secondary denoisers are moved to the GPU only when they run",
        "offload-all": "every model is moved to the GPU only when it runs (model CPU offload)",
        "sequential": "denoisers are streamed to the GPU layer by layer (sequential offload: several times slower)",
    }
    out = [notes[plan.level]]
    if not plan.fits:
        out.append(f"does not fit: the estimated peak {plan.peak_gb} GB exceeds the {plan.budget_gb} GB budget even "
                   "layer by layer; lower VITRINE_GEN_WORK_SIDE or free GPU memory")
    if plan.level != "resident" and not any(m.quantized for m in models):
        den = [m for m in models if m.role == "denoiser"]
        saved = sum(m.bytes - m.bytes * QUANT_BYTES["fp8"] / 2 for m in den)
        quant = [replace(m, bytes=int(m.bytes * QUANT_BYTES["fp8"] / 2)) if m.role == "denoiser" else m for m in models]
        for level in LEVELS:
            if peak_bytes(placements_for(quant, level), act) <= budget:
                if LEVELS.index(level) < LEVELS.index(plan.level):
                    out.append(f"with VITRINE_GEN_QUANTIZE=fp8 (or int8; or VITRINE_GEN_QUANTIZE=nf4 / a GGUF "
                               f"transformer) the denoisers would take {saved / GB:.1f} GB less and the plan "
                               f"would be {level!r} (quantization changes the images)")
                break
    return out


# ------------------------------------------------------------------------------------ models of an engine
def single_file_size(path: Path, prefix: str = "") -> WeightsSize:
    """`WeightsSize` of the tensors of ``path`` whose names start with ``prefix`` (one component of a single-file
    checkpoint: the SDXL checkpoint holds its UNet, VAE and both text encoders under their prefixes; headers only)."""
    params = other = stored = biggest = 0
    for name, (dtype, shape) in read_safetensors_header(path).items():
        if not name.startswith(prefix):
            continue
        n = _numel(shape)
        nbytes = int(n * SAFETENSORS_DTYPE_BYTES[dtype])
        stored += nbytes
        if dtype in FLOAT_DTYPES:
            params += n
            biggest = max(biggest, n)
        else:
            other += nbytes
    return WeightsSize(params, other, stored, biggest, (str(path),))


def _component_size(folder: Path, part: str | None, dtype: str, variant: str | None) -> tuple[WeightsSize | None, int]:
    marker = read_marker(folder) if part else None
    source = part_source(marker, part) if marker is not None else None
    if source is not None:  # a single file's config folder: this part is in the file (or ComfyUI's VAE file)
        return (single_file_size(*source) if source[0].is_file() else None), COMPUTE_BYTES.get(dtype, 2)
    files = weight_files(folder / part if part else folder, variant)
    if not files:
        return None, 0
    size = safetensors_size(files)
    return size, COMPUTE_BYTES.get(dtype, 2)


def _index_parts(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def plan_models(model_set, *, settings, device: str = "cuda", extra: tuple = ()) -> list[PlanModel]:
    """The models a `ModelSet` loads (plus ``extra`` profiles, e.g. FLUX Kontext for try-on), sized from
    their weight-file headers at the dtype they run in; shared components once.

    Args:
        model_set (`ModelSet`): with ``paths`` (profile name -> folder).
        settings (`GenerationSettings`): ``dtype``, ``quantize``, ``gguf`` (sizes of quantized denoisers).
        device (`str`, *optional*): the device planned for (``cpu`` computes in float32).
        extra (`tuple[ModelProfile, ...]`, *optional*): more pipeline profiles (role ``fill``/``kontext``)
            with their folders in ``model_set.paths``.

    A base found as a single file (`pipelines.models.single_file`) is sized from the file's header (only the
    tensors of each part, by key prefix) and from the parts its config folder links (diffusers folders, ComfyUI's
    text-encoder and VAE files).

    Returns:
        `list[PlanModel]`, placement ``resident`` (see `make_plan`). Models whose folder has no weight
        files count 0 bytes with source ``not found``.
    """
    paths = model_set.paths or {}
    base = model_set.base
    out: dict[str, PlanModel] = {}

    def dtype_of(profile) -> str:
        if settings.dtype != "auto":
            return settings.dtype
        return "float32" if device == "cpu" else profile.dtype

    def add(mid: str, role: str, pipeline: str, size: WeightsSize | None, bpp: float, group: str, secondary: bool,
            quantized: str | None = None, source: str = "safetensors header"):
        if mid in out:
            if pipeline not in out[mid].shared_by:
                out[mid].shared_by.append(pipeline)
            out[mid].secondary = out[mid].secondary and secondary
            return
        nbytes = size.at(bpp) if size is not None else 0
        if quantized == "gguf" and size is not None:
            nbytes = size.stored_bytes
        out[mid] = PlanModel(id=mid, role=role, pipeline=pipeline, bytes=nbytes, group=group, secondary=secondary,
                             quantized=quantized, max_tensor_bytes=int((size.max_tensor_params if size else 0) * bpp),
                             shared_by=[pipeline], source=source if size is not None else "not found")

    pipelines = [(base, "base", False)]
    if model_set.seam is not None:
        pipelines.append((model_set.seam, model_set.seam.role, True))
    if model_set.refiner is not None:
        pipelines.append((model_set.refiner, "refiner", True))
    pipelines += [(p, p.role, True) for p in extra]
    for profile, role, secondary in pipelines:
        folder = paths.get(profile.name)
        if folder is None:
            continue
        folder = Path(folder)
        index = _index_parts(folder)
        dt = dtype_of(profile)
        variant = "fp16" if dt == "float16" else None
        for part, entry in index.items():
            if part.startswith("_") or not isinstance(entry, (list, tuple)) or not entry or entry[0] is None:
                continue
            cls = str(entry[1])
            if any(s in cls for s in ("Tokenizer", "Scheduler", "Processor", "FeatureExtractor")):
                continue
            owner = profile
            if profile is not base and part in profile.shares and part in _index_parts(Path(paths[base.name])):
                owner = base  # loaded once from the base (see loading.load_pipeline)
            if part == "vae" and model_set.vae is not None and paths.get(model_set.vae.name):
                add(model_set.vae.id, "vae", role, safetensors_size(weight_files(Path(paths[model_set.vae.name]))),
                    COMPUTE_BYTES[dtype_of(model_set.vae)], "vae", secondary)
                continue
            ofolder = Path(paths[owner.name])
            is_denoiser = part in ("transformer", "unet")
            quant = None
            if is_denoiser and owner is base and settings.gguf and model_set.gguf is not None:
                gpath = paths.get(model_set.gguf.name)
                gsize = gguf_size(gguf_weight_file(model_set.gguf, Path(gpath), settings.gguf_file)) if gpath else None
                add(f"{owner.id}/{part}", "denoiser", role, gsize, 0, f"denoiser:{owner.name}", secondary,
                    quantized="gguf", source="gguf")
                continue
            size, bpp = _component_size(ofolder, part, dt, variant)
            if is_denoiser and settings.quantize:
                quant, bpp = settings.quantize, QUANT_BYTES.get(settings.quantize, bpp)
            role_name = "denoiser" if is_denoiser else ("vae" if part == "vae" else "text")
            group = f"denoiser:{owner.name}" if is_denoiser else ("vae" if part == "vae" else "text")
            add(f"{owner.id}/{part}", role_name, role, size, bpp, group, secondary, quantized=quant)
        if role == "base":
            for cn in model_set.controlnets:
                cfolder = paths.get(cn.name)
                size = safetensors_size(weight_files(Path(cfolder))) if cfolder else None
                add(cn.id, "controlnet", "base", size, COMPUTE_BYTES[dtype_of(cn)], f"denoiser:{base.name}", False)
    return list(out.values())


def gpu_memory(device: str = "cuda") -> tuple[float, float] | None:
    """``(free, total)`` bytes of the CUDA device (`torch.cuda.mem_get_info`), or ``None`` without CUDA."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(torch.device(device if device.startswith("cuda") else "cuda"))
    return float(free), float(total)


def min_level_for(settings) -> str:
    """The least frugal level the settings allow (``VITRINE_GEN_OFFLOAD``)."""
    return {"none": "resident", "model": "offload-all", "sequential": "sequential"}[settings.offload]


def plan_for(model_set, settings, *, device: str, gpu_memory_gb: float | None = None, extra: tuple = (),
             megapixels: float = 1.0) -> MemoryPlan:
    """The plan for ``model_set`` on ``device``: the budget is ``gpu_memory_gb`` when given, else the
    CUDA device's free memory; a CPU plan without either."""
    models = plan_models(model_set, settings=settings, device=device if gpu_memory_gb is None else "cuda",
                         extra=extra)
    if gpu_memory_gb is not None:
        budget = total = gpu_memory_gb * GB
        device = device if device.startswith("cuda") else "cuda"
    elif device.startswith("cuda") and (mem := gpu_memory(device)) is not None:
        budget, total = mem
    else:
        budget = total = None
    return make_plan(models, family=model_set.family, budget_bytes=budget, total_bytes=total, device=device,
                     min_level=min_level_for(settings), megapixels=megapixels)


#: The catalog's default lifestyle size (`pipelines.catalog.options.RenderOptions.lifestyle_size`).
DEFAULT_OUTPUT_SIZE = (1600, 2000)


def work_megapixels(settings, output_size: tuple[int, int] = DEFAULT_OUTPUT_SIZE) -> float:
    """Megapixels one generated image works at: ``VITRINE_GEN_WORK_SIDE``² when set, else the native-resolution
    working size of ``output_size`` (`worksize.native_work_size` at 1024: 1344x1680 = 2.26 MP for 1600x2000)."""
    if settings.work_side:
        return settings.work_side ** 2 / 1e6
    w, h = native_work_size(output_size, 1024, 16)
    return w * h / 1e6


def tryon_extras(model_set, model_root) -> tuple:
    """FLUX.1 Kontext-dev (try-on and edits) when found for a FLUX model set: added to its paths and
    returned as an extra pipeline for `plan_models` (a batch with a Kontext SKU loads a third transformer)."""
    if model_set.family != "flux":
        return ()
    out = []
    for p in list_profiles("flux", "kontext"):
        if model_set.paths is not None and p.name not in model_set.paths:
            loc = find(p.id, model_root, required_files=p.required_files, revision=p.revision)
            if loc is not None and (not p.base_models or model_set.base.id in p.base_models):
                model_set.paths[p.name] = loc.path
                out.append(p)
    return tuple(out)


def plan_for_engine(engine: str = "auto", model_root=None, *, gpu_memory_gb: float | None = None,
                    settings=None) -> MemoryPlan:
    """The plan of ``engine``'s models (``flux``, ``sdxl``, or ``auto``: the first family found, FLUX first)
    under ``model_root``, with ``settings`` (default `GenerationSettings()`); see `plan_for`.

    Raises:
        `ModelNotFoundError`: no base model of the family is found. `InputError`: bad settings.
    """
    settings = settings or GenerationSettings()
    families = ("flux", "sdxl") if engine == "auto" else (engine,)
    model_set, first_error = None, None
    for family in families:
        try:
            model_set = resolve_model_set(family, model_root, settings)
            break
        except ModelNotFoundError as exc:
            first_error = first_error or exc
    if model_set is None:
        raise first_error  # type: ignore[misc]
    device = resolve_device(settings.device) if gpu_memory_gb is None else "cuda"
    return plan_for(model_set, settings, device=device, gpu_memory_gb=gpu_memory_gb,
                    extra=tryon_extras(model_set, model_root), megapixels=work_megapixels(settings))


# ----------------------------------------------------------------------------------------- applying it
class _GroupHook:
    """An accelerate `ModelHook` that moves a model's offload group to the GPU before the model runs,
    after moving the group that was there back to the CPU. Resident models get one too (a no-op) so
    diffusers' ``_execution_device`` finds the execution device from the hooks."""

    no_grad = False

    def __init__(self, manager: OffloadManager, group: str | None):
        self.manager = manager
        self.group = group
        self.execution_device = manager.device

    def init_hook(self, module):
        return module

    def pre_forward(self, module, *args, **kwargs):
        if self.group is not None:
            self.manager.activate(self.group)
        return args, kwargs

    def post_forward(self, module, output):
        return output

    def detach_hook(self, module):
        return module


class OffloadManager:
    """Places loaded models as a `MemoryPlan` says and moves offloaded groups in and out as they run.

    Args:
        device (`str`): the CUDA device (``cuda``, ``cuda:N``); tests use ``cpu``.
        offload_device (`str`, *optional*, defaults to ``"cpu"``): where offloaded weights wait.
    """

    def __init__(self, device: str, offload_device: str = "cpu"):
        self.device = device
        self.offload_device = offload_device
        self.plan: MemoryPlan | None = None
        self.budget: float | None = None
        self.total: float | None = None
        self.family = "flux"
        self.megapixels = 1.0
        self._universe: dict[str, PlanModel] = {}  # every model planned for, placement ignored
        self._models: dict[str, Any] = {}  # plan model id -> module
        self._groups: dict[str, list[Any]] = {}
        self._active: str | None = None
        self._lock = threading.RLock()
        self.moves = 0

    # -- planning ------------------------------------------------------------------------------------
    def ensure(self, models: list[PlanModel], *, family: str, min_level: str = "resident",
               megapixels: float = 1.0) -> MemoryPlan | None:
        """Plan for ``models`` too (with those already planned for) and re-place what is loaded.

        The budget is the device's free memory the first time (`gpu_memory`); a re-plan is never less
        frugal than the current plan (after an out-of-memory retry the batch stays frugal). Returns the
        plan, or ``None`` when the device reports no memory (not CUDA): models then go where the settings say.
        """
        with self._lock:
            added = [m for m in models if m.id not in self._universe]
            if not added and self.plan is not None:
                return self.plan
            if self.budget is None:
                mem = gpu_memory(self.device)
                if mem is None:
                    return None
                self.budget, self.total = mem
                self.family, self.megapixels = family, megapixels
            for m in added:
                self._universe[m.id] = m
            floor = min_level
            if self.plan is not None and self.plan.level in LEVELS and LEVELS.index(self.plan.level) > LEVELS.index(floor):
                floor = self.plan.level
            self.megapixels = max(self.megapixels, megapixels)
            plan = make_plan(list(self._universe.values()), family=self.family, budget_bytes=self.budget,
                             total_bytes=self.total, device=self.device, min_level=floor, megapixels=self.megapixels)
            if self.plan is not None:
                plan.retries = list(self.plan.retries)
            logger.info("memory plan %r for %d models: estimated peak %.1f GB of %.1f GB", plan.level,
                        len(plan.models), plan.peak_gb, plan.budget_gb or 0)
            self.apply(plan)
            return plan

    def evict_all(self) -> None:
        """Move every attached model off the GPU and free the CUDA cache (before an out-of-memory retry)."""
        import gc

        with self._lock:
            for module in self._models.values():
                if not getattr(module, "_vitrine_sequential", False):
                    module.to(self.offload_device)
            self._active = None
            gc.collect()
            empty_cuda_cache()

    def replan_more_frugal(self, where: str, error: str = "") -> bool:
        """Out of memory ``where`` (``load``/``run``): free everything, re-place every model one level more
        frugal, record it in ``plan.retries``; returns ``False`` when the plan is already the most frugal."""
        with self._lock:
            if self.plan is None:
                return False
            new = more_frugal(self.plan, list(self._universe.values()))
            if new is None:
                return False
            new.retries.append({"at": where, "from": self.plan.level, "to": new.level, "error": error[:300]})
            logger.warning("out of GPU memory at %s: re-planned %r -> %r (estimated peak %.1f GB)", where,
                           self.plan.level, new.level, new.peak_gb)
            self.evict_all()
            self.apply(new)
            return True

    def placement(self, model_id: str) -> str:
        """The planned placement of ``model_id`` (``model-offload`` for models the plan does not list)."""
        if self.plan is None:
            return "resident"
        return self.plan.placement(model_id) or "model-offload"

    def load_device(self, model_id: str) -> str:
        """Where to put ``model_id`` at load: the GPU when resident, else the CPU."""
        return self.device if self.placement(model_id) == "resident" else self.offload_device

    def attach(self, model_id: str, module, group: str | None = None) -> None:
        """Place a loaded ``module`` (plan id ``model_id``) and install its hook."""
        from accelerate.hooks import add_hook_to_module, remove_hook_from_module

        with self._lock:
            place = self.placement(model_id)
            if group is None:
                m = next((m for m in (self.plan.models if self.plan else []) if m.id == model_id), None)
                group = m.group if m is not None else f"own:{model_id}"
            for g in self._groups.values():
                g[:] = [x for x in g if x is not module]
            self._models[model_id] = module
            if getattr(module, "_vitrine_sequential", False):
                return  # streamed layer by layer already (the most frugal placement: nothing to change)
            remove_hook_from_module(module, recurse=True)
            if place == "resident":
                module.to(self.device)
                add_hook_to_module(module, _GroupHook(self, None))
            elif place == "sequential-offload":
                from accelerate import cpu_offload

                module.to(self.offload_device)
                cpu_offload(module, execution_device=self.device)
                module._vitrine_sequential = True
            else:
                module.to(self.offload_device)
                self._groups.setdefault(group, []).append(module)
                add_hook_to_module(module, _GroupHook(self, group))

    def activate(self, group: str) -> None:
        """Move ``group`` to the GPU, the previously active group back to the CPU."""
        with self._lock:
            if self._active == group:
                return
            if self._active is not None:
                for m in self._groups.get(self._active, []):
                    m.to(self.offload_device)
                empty_cuda_cache()
            for m in self._groups.get(group, []):
                m.to(self.device)
            self._active = group
            self.moves += 1

    def apply(self, plan: MemoryPlan) -> None:
        """Re-place every attached model as ``plan`` says (the out-of-memory re-plan)."""
        with self._lock:
            self.plan = plan
            self._groups.clear()
            self._active = None
            items = list(self._models.items())
            # models leaving the GPU first, so the ones staying have room
            for mid, module in items:
                if self.placement(mid) != "resident" and not getattr(module, "_vitrine_sequential", False):
                    module.to(self.offload_device)
            empty_cuda_cache()
            for mid, module in items:
                self.attach(mid, module)

    def clear(self) -> None:
        """Forget every model and the plan (after `MODEL_CACHE.clear`)."""
        with self._lock:
            self._models.clear()
            self._groups.clear()
            self._universe.clear()
            self._active = None
            self.plan = None
            self.budget = self.total = None


def empty_cuda_cache() -> None:
    """Release PyTorch's cached CUDA blocks (no-op without CUDA or torch)."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


_MANAGERS: dict[str, OffloadManager] = {}
_MANAGERS_LOCK = threading.Lock()


def manager_for(device: str) -> OffloadManager:
    """The process's `OffloadManager` of ``device`` (one per device: models are shared across engines)."""
    with _MANAGERS_LOCK:
        if device not in _MANAGERS:
            _MANAGERS[device] = OffloadManager(device)
        return _MANAGERS[device]


def clear_managers() -> None:
    """Forget every device's plan and models (`MODEL_CACHE.clear` calls it)."""
    with _MANAGERS_LOCK:
        for mgr in _MANAGERS.values():
            mgr.clear()


def plan_to_text(plan: MemoryPlan) -> str:
    """The human-readable plan ``vitrine models --plan`` prints."""
    if plan.device == "cpu":
        head = "no GPU found (and no --gpu-memory): planning for the CPU"
    else:
        head = (f"GPU {plan.device}: {plan.gpu_memory_gb} GB, budget {plan.budget_gb} GB; plan {plan.level!r}: "
                f"estimated peak {plan.peak_gb} GB ({'fits' if plan.fits else 'DOES NOT FIT'}; "
                f"{plan.activations_gb} GB of it activations and margin)")
    lines = [head]
    for m in plan.models:
        q = f" [{m.quantized}]" if m.quantized else ""
        shared = f"  shared by {', '.join(m.shared_by)}" if len(m.shared_by) > 1 else ""
        lines.append(f"  {m.id:<58} {m.bytes / GB:7.2f} GB  {m.placement}{q}{shared}"
                     + ("  (weights not found)" if m.source == "not found" else ""))
    lines += [f"  note: {n}" for n in plan.notes]
    return "\n".join(lines)
