"""Loading FLUX / SDXL models once per process, and assembling diffusers pipelines from them.

Every model (a pipeline component, a ControlNet, a quantized or LoRA-fused denoiser) is loaded through
`MODEL_CACHE`, keyed by ``(model id, revision, dtype, device, part, variant, folder)``: a second request for the
same key returns the object already in memory. Pipelines are cheap shells around cached models, built
with `load_pipeline`; components that a profile ``shares`` with its base (the FLUX.1 text encoders and
VAE of Fill/Kontext, SDXL's of the inpainting model) are taken from the base, so the 9 GB T5 of FLUX is
loaded once even when three FLUX pipelines use it.

Weights are read from safetensors (``use_safetensors=True``) or GGUF files; nothing is unpickled.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import re
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.errors import InputError, MissingBackendError
from pipelines.models.location import gguf_weight_file
from pipelines.models.profiles import ModelProfile, get_profile
from pipelines.models.single_file import locate_model, part_source, read_marker
from pipelines.generation.device import resolve_device
from pipelines.generation.memplan import clear_managers, empty_cuda_cache, manager_for, min_level_for, plan_models
from pipelines.generation.modelset import ModelSet
from pipelines.generation.oom import GenerationOOMError, oom_types
from pipelines.generation.settings import GenerationSettings, parse_lora

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


class _DropUpcastNotice(logging.Filter):
    """diffusers warns on every ``model.to(dtype)`` (e.g. each SDXL call upcasting its VAE) that no module
    needs float32 (``[]``); it is expected and says nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not (msg.startswith("There are modules in") and "should be kept in float32: []" in msg)


logging.getLogger("diffusers.models.modeling_utils").addFilter(_DropUpcastNotice())
# diffusers' own FLUX ControlNet module imports a deprecated alias; not actionable for us.
warnings.filterwarnings("ignore", message=".*FluxPosEmbed.*", category=FutureWarning)

#: Components that are models (moved to a device, cast to a dtype); the rest are tokenizers/schedulers.
DENOISERS = ("transformer", "unet")
#: Tests set this to plan (and attach offload hooks) on a CPU device as on CUDA.
_PLAN_ANY_DEVICE = False


# ------------------------------------------------------------------------------------------------ cache
@dataclass(frozen=True)
class CacheKey:
    """What identifies a loaded model in the per-process cache.

    Attributes:
        model_id (`str`): the repo id (``org/name``) the weights come from.
        revision (`str`, *optional*): the pinned revision (``None`` = the snapshot found).
        dtype (`str`): e.g. ``float32``, ``bfloat16`` (``-`` for tokenizers and schedulers).
        device (`str`): e.g. ``cpu``, ``cuda``, ``cuda+offload`` (``-`` for tokenizers and schedulers).
        part (`str`): the component (``transformer``, ``vae``, ``text_encoder_2``, ``controlnet``...).
        variant (`str`, *optional*): how the weights were transformed (``gguf:...``, ``single-file:...``,
            ``torchao:fp8``, ``+lora:name@scale``); empty for the plain weights.
        folder (`str`, *optional*): the resolved folder the model was found in, so that two model roots
            holding the same repo id (a notebook switching roots, a test's random models) never share an
            entry; empty when not known.
    """

    model_id: str
    revision: str | None
    dtype: str
    device: str
    part: str
    variant: str = ""
    folder: str = ""

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        var = f" [{self.variant}]" if self.variant else ""
        return f"{self.model_id}{rev}/{self.part} ({self.dtype}, {self.device}){var}"


class ModelCache:
    """A thread-safe, per-process cache of loaded models with a load log.

    Two threads asking for the same key at once load it once: the second waits for the first.
    ``loads`` counts the actual loads per key (1 each when models load once per process), ``hits``
    the requests served from memory.
    """

    def __init__(self) -> None:
        self._items: dict[CacheKey, Any] = {}
        self._key_locks: dict[CacheKey, threading.Lock] = {}
        self._lock = threading.Lock()
        self.loads: Counter[CacheKey] = Counter()
        self.load_seconds: dict[CacheKey, float] = {}
        self.hits = 0

    def get(self, key: CacheKey, load: Callable[[], Any]) -> Any:
        """The cached object for ``key``, calling ``load()`` (once) when it is not there yet."""
        with self._lock:
            if key in self._items:
                self.hits += 1
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    self.hits += 1
                    return self._items[key]
            t0 = time.perf_counter()
            obj = load()
            seconds = time.perf_counter() - t0
            with self._lock:
                self._items[key] = obj
                self.loads[key] += 1
                self.load_seconds[key] = round(seconds, 4)
            logger.info("loaded %s in %.2fs", key, seconds)
            return obj

    def __contains__(self, key: CacheKey) -> bool:
        with self._lock:
            return key in self._items

    def keys(self) -> list[CacheKey]:
        with self._lock:
            return list(self._items)

    def stats(self) -> dict[str, Any]:
        """``{"models": n cached, "loads": total loads, "hits": n, "load_seconds": total, "reloaded": [keys
        loaded more than once]}``."""
        with self._lock:
            return {
                "models": len(self._items),
                "loads": sum(self.loads.values()),
                "hits": self.hits,
                "load_seconds": round(sum(self.load_seconds.values()), 3),
                "reloaded": [str(k) for k, n in self.loads.items() if n > 1],
            }

    def clear(self) -> None:
        """Drop every cached model (the load log too). Frees GPU memory once nothing else refers to them."""
        with self._lock:
            self._items.clear()
            self._key_locks.clear()
            self.loads.clear()
            self.load_seconds.clear()
            self.hits = 0
        clear_managers()  # the plans' hooks and placements refer to the models just dropped
        empty_cuda_cache()


#: The per-process model cache every generative engine and `load_pipeline` use.
MODEL_CACHE = ModelCache()


# ------------------------------------------------------------------------------------------- device/dtype
def resolve_dtype(setting: str, profile: ModelProfile, device: str) -> torch.dtype:
    """The compute dtype: ``auto`` → ``float32`` on a CPU, else the profile's (``bfloat16``/``float16``)."""
    import torch

    name = setting
    if setting == "auto":
        name = "float32" if device == "cpu" else profile.dtype
    return getattr(torch, name)


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


# ----------------------------------------------------------------------------------------------- locating
def model_path(profile: ModelProfile, model_root: str | Path | None) -> Path:
    """The snapshot folder of ``profile`` (``MODEL_ROOT/<org>/<name>/`` or the Hugging Face cache); for a base
    model found as a single file, its config folder (`pipelines.models.single_file.config_folder`).

    Raises:
        `ModelNotFoundError`: listing where it looked and how to fetch the model.
    """
    return locate_model(profile, model_root).path


def _single_file_state(marker: dict[str, Any], part: str) -> dict[str, Any]:
    """The tensors of one component of a single file (keys with its prefix, kept as they are), read with
    ``safe_open`` so the other components' tensors are not read."""
    from safetensors import safe_open

    path, prefix = part_source(marker, part)
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}


def load_from_single_file(cls, marker: dict[str, Any], folder: Path, part: str, dtype, **kwargs) -> Any:
    """One component of a single-file checkpoint through diffusers' converters, with the config folder's configs
    (``local_files_only``: never the hub). CLIP text encoders go through diffusers' LDM CLIP converter; a
    component in a file of its own (FLUX's transformer, ComfyUI's VAE: `part_source`) is read by diffusers from the path."""
    path, prefix = part_source(marker, part)
    try:
        if not hasattr(cls, "from_single_file"):  # transformers text encoders (CLIP-L, OpenCLIP bigG)
            from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm

            return create_diffusers_clip_model_from_ldm(cls, _single_file_state(marker, part), subfolder=part,
                                                        config=str(folder), torch_dtype=dtype, local_files_only=True)
        whole = prefix == "" or (marker["kind"] == "flux-transformer" and part == "transformer")
        source = str(path) if whole else _single_file_state(marker, part)
        return cls.from_single_file(source, config=str(folder), subfolder=part, torch_dtype=dtype,
                                    local_files_only=True, **kwargs)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise InputError(f"cannot load {part} from the single-file checkpoint ({type(exc).__name__}: "
                         f"{str(exc)[:300]}); is it a {marker['model_id']} checkpoint in the original layout?",
                         path=path) from None


def read_model_index(folder: Path) -> dict[str, Any]:
    """A diffusers pipeline repo's ``model_index.json``.

    Raises:
        `InputError`: missing or unparsable (naming the file).
    """
    path = folder / "model_index.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("not a diffusers pipeline folder (no model_index.json)", path=path) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read model_index.json: {exc}", path=path) from None


#: diffusers and transformers import their classes lazily, on first attribute access; two threads doing
#: that at once can see a half-initialised module ("cannot import name 'CLIPTextModel'", "cannot import
#: name 'FluxLoraLoaderMixin'"). Every class lookup goes through this lock.
_IMPORT_LOCK = threading.RLock()


def _import_class(library: str, name: str):
    if library not in ("diffusers", "transformers"):
        raise InputError(f"component library {library!r} is not supported (expected diffusers or transformers)")
    with _IMPORT_LOCK:
        module = importlib.import_module(library)
        try:
            return getattr(module, name)
        except AttributeError:
            raise InputError(f"{library} has no class {name!r}; is the installed {library} too old?") from None


def preload_classes(folders: list[Path] | tuple[Path, ...] = (), names: tuple[tuple[str, str], ...] = ()) -> list[str]:
    """Import, under one lock, every class the pipelines in ``folders`` (their ``model_index.json`` and
    ``config.json``) and ``names`` (``(library, class)``) need, so later threads only look them up.

    Engines call it at construction (finding: try-on Fill and Kontext SKUs loading in parallel threads
    raced in diffusers' lazy imports). Returns the classes imported; unknown ones are skipped.
    """
    wanted = list(names)
    for folder in folders:
        for fname in ("model_index.json", "config.json"):
            try:
                data = json.loads((Path(folder) / fname).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if fname == "model_index.json" and data.get("_class_name"):
                wanted.append(("diffusers", data["_class_name"]))
            elif fname == "config.json" and data.get("_class_name"):
                wanted.append(("diffusers", data["_class_name"]))
            for entry in data.values() if fname == "model_index.json" else ():
                if isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[0] in ("diffusers", "transformers"):
                    wanted.append((entry[0], entry[1]))
    done = []
    with _IMPORT_LOCK:
        for library, name in dict.fromkeys(wanted):
            try:
                _import_class(library, name)
                done.append(f"{library}.{name}")
            except InputError:
                continue
    return done


# ------------------------------------------------------------------------------------------- components
@dataclass
class LoadContext:
    """Where and how models are loaded: the model root, settings, resolved device and offload."""

    model_root: str | Path | None
    settings: GenerationSettings
    device: str = ""
    offload: bool = False

    def __post_init__(self) -> None:
        if not self.device:
            self.device = resolve_device(self.settings.device)
        self.offload = self.settings.offload != "none"
        if self.offload and not self.device.startswith("cuda"):
            raise InputError(
                f"CPU offload needs a CUDA device (the device is {self.device}); unset VITRINE_GEN_OFFLOAD",
                key="VITRINE_GEN_OFFLOAD",
            )

    @property
    def load_device(self) -> str:
        """Where weights are put at load: the CPU when offloading (hooks move them), else the device."""
        return "cpu" if self.offload else self.device

    @property
    def manager(self):
        """The device's `memplan.OffloadManager` when it holds a memory plan (CUDA), else ``None``."""
        if not self.device.startswith("cuda") and not _PLAN_ANY_DEVICE:
            return None
        mgr = manager_for(self.device)
        return mgr if mgr.plan is not None else None

    def place(self, model_id: str, model):
        """Put a freshly loaded model where the memory plan says (``model_id``: ``repo/part`` or the repo
        id), or on `load_device` without a plan; returns it in eval mode."""
        mgr = self.manager
        if mgr is None:
            return model.to(self.load_device).eval()
        mgr.attach(model_id, model)
        return model.eval()

    @property
    def device_key(self) -> str:
        return f"{self.device}+{self.settings.offload}-offload" if self.offload else self.device

    def dtype(self, profile: ModelProfile) -> torch.dtype:
        return resolve_dtype(self.settings.dtype, profile, self.device)

    def key(self, profile: ModelProfile, part: str, variant: str = "", *, tensors: bool = True,
            folder: Path | None = None) -> CacheKey:
        where = str(Path(folder).resolve()) if folder is not None else ""
        if not tensors:
            return CacheKey(profile.id, profile.revision, "-", "-", part, variant, where)
        return CacheKey(profile.id, profile.revision, _dtype_name(self.dtype(profile)), self.device_key, part, variant,
                        where)


def load_component(profile: ModelProfile, part: str, ctx: LoadContext, *, index: dict | None = None) -> Any:
    """One component of a pipeline repo (``text_encoder``, ``vae``, ``tokenizer``, ``transformer``...).

    Cached in `MODEL_CACHE`. Models are cast to the context's dtype, put on its device and set to eval
    mode; schedulers are *not* cached (they hold per-call state): a fresh one is returned each time.

    Args:
        profile (`ModelProfile`): the repo's profile.
        part (`str`): the component's folder name, as in ``model_index.json``.
        ctx (`LoadContext`): model root, settings, device.
        index (`dict`, *optional*): the repo's ``model_index.json`` (read when not given).

    Returns:
        The component (a `torch.nn.Module`, a tokenizer or a scheduler).

    Raises:
        `ModelNotFoundError`: the repo is not found. `InputError`: the repo has no such component.
    """
    folder = model_path(profile, ctx.model_root)
    index = index if index is not None else read_model_index(folder)
    entry = index.get(part)
    if not entry or entry[0] is None:
        raise InputError(f"{profile.id} has no component {part!r}", path=folder / "model_index.json", key=part)
    library, class_name = entry
    cls = _import_class(library, class_name)
    if part == "scheduler" or class_name.endswith("Scheduler"):
        config = MODEL_CACHE.get(ctx.key(profile, part, tensors=False, folder=folder), lambda: cls.load_config(folder / part))
        return cls.from_config(config)
    if "Tokenizer" in class_name or "Processor" in class_name or "FeatureExtractor" in class_name:
        return MODEL_CACHE.get(ctx.key(profile, part, tensors=False, folder=folder), lambda: cls.from_pretrained(folder / part))
    if part in DENOISERS:
        return load_denoiser(profile, ctx, part=part, cls=cls)
    dtype = ctx.dtype(profile)
    marker = read_marker(folder)
    source = part_source(marker, part) if marker is not None else None
    if source is not None:
        def load_file():
            _quiet_progress_bars()
            return ctx.place(f"{profile.id}/{part}", load_from_single_file(cls, marker, folder, part, dtype))

        return MODEL_CACHE.get(ctx.key(profile, part, f"single-file:{source[0].name}", folder=folder), load_file)

    def load():
        _quiet_progress_bars()
        vkw = variant_kwargs(folder / part, dtype)
        if library == "transformers":
            model = cls.from_pretrained(folder / part, dtype=dtype, use_safetensors=True, **vkw)
        else:
            model = cls.from_pretrained(folder, subfolder=part, torch_dtype=dtype, use_safetensors=True, **vkw)
        return ctx.place(f"{profile.id}/{part}", model)

    return MODEL_CACHE.get(ctx.key(profile, part, folder=folder), load)


#: Weight file names as diffusers/transformers write them, plain and fp16 variant (shards included).
_PLAIN_WEIGHTS = re.compile(r"^(diffusion_pytorch_model|model)(-\d{5}-of-\d{5})?\.safetensors$")
_FP16_WEIGHTS = re.compile(r"^(diffusion_pytorch_model|model)\.fp16(-\d{5}-of-\d{5})?\.safetensors$")


def weights_variant(folder: Path, dtype: Any) -> str | None:
    """The weights variant to read from a model folder: ``"fp16"`` or ``None`` (the plain files).

    The SDXL repos ship ``*.fp16.safetensors`` beside the fp32 ``*.safetensors`` (and a download with
    ``--include "*.fp16.safetensors"`` has only the former). The fp16 files are read when they are the
    only weights, or when the compute dtype is not float32 (half the bytes to read and hold); the plain
    files when the compute dtype is float32 (CPU) and they exist (no rounding).

    Args:
        folder (`Path`): the component's folder (``unet/``, ``text_encoder/``, a ControlNet repo root).
        dtype (`torch.dtype` or `str`): the compute dtype.
    """
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return None
    if not any(_FP16_WEIGHTS.match(n) for n in names):
        return None
    if not any(_PLAIN_WEIGHTS.match(n) for n in names) or _dtype_name(dtype) != "float32":
        return "fp16"
    return None


def variant_kwargs(folder: Path, dtype: Any) -> dict[str, str]:
    """``{"variant": "fp16"}`` when `weights_variant` picks the fp16 files, else ``{}``."""
    v = weights_variant(folder, dtype)
    return {"variant": v} if v else {}


def _quiet_progress_bars() -> None:
    """transformers prints a "Loading weights" bar per model; it would break the CLI's progress bar."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def _torchao_config(mode: str):
    """The torchao config of ``fp8`` (float8 dynamic activations and weights) or ``int8`` (weight-only)."""
    try:
        import torchao.quantization as tq
    except ImportError:
        raise MissingBackendError(
            f"torchao ({mode})",
            "pip install torchao (fp8 needs an NVIDIA GPU with compute capability >= 8.9, e.g. L4/H100), "
            "or unset VITRINE_GEN_QUANTIZE",
        ) from None
    if mode == "fp8":
        return tq.Float8DynamicActivationFloat8WeightConfig()
    if mode == "int8":
        return tq.Int8WeightOnlyConfig()
    raise InputError(f"unknown quantization {mode!r}; expected fp8 or int8", key="VITRINE_GEN_QUANTIZE")


def nf4_config(compute_dtype):
    """diffusers' `BitsAndBytesConfig` for 4-bit NormalFloat weights (``VITRINE_GEN_QUANTIZE=nf4``): nf4 with
    double quantization (about 0.56 bytes per weight), computing in ``compute_dtype``.

    Raises:
        `MissingBackendError`: bitsandbytes is not installed (the message says what to install).
    """
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise MissingBackendError(
            "bitsandbytes (nf4)",
            "pip install 'bitsandbytes>=0.43.2' (4-bit weights need an NVIDIA GPU), or unset VITRINE_GEN_QUANTIZE "
            "(VITRINE_GEN_QUANTIZE=fp8/int8 uses torchao; VITRINE_GEN_GGUF a GGUF file)",
        )
    from diffusers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def quantization_config(settings: GenerationSettings, dtype=None):
    """diffusers' quantization config for the settings' quantization of the denoiser at load, or ``None``:
    `TorchAoConfig` for ``fp8``/``int8``, `BitsAndBytesConfig` (`nf4_config`) for ``nf4``."""
    if settings.quantize is None:
        return None
    if settings.quantize == "nf4":
        import torch

        return nf4_config(dtype if dtype is not None else torch.bfloat16)
    aoconfig = _torchao_config(settings.quantize)
    from diffusers import TorchAoConfig

    return TorchAoConfig(aoconfig)


def quantize_model(model, mode: str) -> None:
    """Quantize an already loaded denoiser in place with torchao (``fp8`` or ``int8``; see `_torchao_config`).

    The loader quantizes at load instead (``VITRINE_GEN_QUANTIZE``); this is for models built in memory
    (bench/gpu_generation.py).

    Raises:
        `MissingBackendError`: torchao is not installed (the message says what to install).
    """
    aoconfig = _torchao_config(mode)
    from torchao.quantization import quantize_

    quantize_(model, aoconfig)


def denoiser_variant(profile: ModelProfile, settings: GenerationSettings, *, is_base: bool,
                     found_single_file: str | None = None) -> tuple[str, list]:
    """How the denoiser of ``profile`` is loaded: a variant string for the cache key, and the LoRAs.
    ``found_single_file``: the name of the single file the base was found as (no diffusers folder).

    Returns:
        `tuple`: ``(variant, [(lora profile, scale), ...])``.
    """
    parts, loras = [], []
    if is_base:
        if settings.gguf:
            parts.append(f"gguf:{settings.gguf}" + (f"/{settings.gguf_file}" if settings.gguf_file else ""))
        elif found_single_file:
            parts.append(f"single-file:{found_single_file}")
        elif settings.single_file:
            if not profile.single_file:
                raise InputError(f"{profile.id} has no single-file checkpoint in its profile",
                                 key="VITRINE_GEN_SINGLE_FILE")
            parts.append(f"single-file:{profile.single_file}")
        for item in settings.loras:
            name, scale = parse_lora(item)
            lp = get_profile(name, key="VITRINE_GEN_LORAS")
            if lp.role != "lora" or lp.family != profile.family:
                raise InputError(f"{name} is not a {profile.family} LoRA (it is a {lp.family} {lp.role})",
                                 key="VITRINE_GEN_LORAS")
            loras.append((lp, scale if scale is not None else lp.lora_scale))
            parts.append(f"+lora:{lp.name}@{loras[-1][1]}")
    if settings.quantize:
        parts.append(f"torchao:{settings.quantize}")
    parts += [f"+{name}" for name in _speedup_names(settings)]
    return "".join(parts), loras


def _speedup_names(settings: GenerationSettings) -> list[str]:
    names = ["fuse_qkv"] if settings.fuse_qkv else []
    if settings.cache_threshold is not None:
        names.append(f"first_block_cache:{settings.cache_threshold}")
    if settings.compile:
        names.append("compile_repeated_blocks")
    return names


def load_denoiser(profile: ModelProfile, ctx: LoadContext, *, part: str | None = None, cls=None,
                  is_base: bool | None = None) -> Any:
    """The denoiser (FLUX transformer or SDXL UNet) of ``profile``, as the settings ask for it.

    For the base model: from its GGUF file (``settings.gguf``), its single ``.safetensors`` file
    (``settings.single_file``) or the diffusers folder; torchao-quantized when ``settings.quantize``;
    with every LoRA of ``settings.loras`` fused into it (kept as active adapters when the weights are
    quantized, which cannot take fused weights). Cached per variant.
    """
    folder = model_path(profile, ctx.model_root)
    index = read_model_index(folder)
    if part is None:
        part = next((p for p in DENOISERS if p in index), None)
        if part is None:
            raise InputError(f"{profile.id} has no transformer or unet", path=folder / "model_index.json")
    if cls is None:
        cls = _import_class(*index[part])
    is_base = profile.role == "base" if is_base is None else is_base
    marker = read_marker(folder)
    variant, loras = denoiser_variant(profile, ctx.settings, is_base=is_base,
                                      found_single_file=marker["name"] if marker else None)
    dtype = ctx.dtype(profile)
    settings = ctx.settings

    def load():
        quantized = False
        if is_base and settings.gguf:
            model = _load_gguf(profile, settings.gguf, cls, folder, part, dtype, ctx)
            quantized = True
        elif marker is not None:
            qc = quantization_config(settings, dtype)
            quantized = qc is not None
            model = load_from_single_file(cls, marker, folder, part, dtype,
                                          **({"quantization_config": qc} if qc is not None else {}))
        elif is_base and settings.single_file:
            path = folder / profile.single_file
            if not path.is_file():
                raise InputError("single-file checkpoint not found", path=path, key="VITRINE_GEN_SINGLE_FILE")
            model = cls.from_single_file(str(path), config=str(folder), subfolder=part, torch_dtype=dtype,
                                         local_files_only=True)
        else:
            qc = quantization_config(settings, dtype)
            quantized = qc is not None
            model = cls.from_pretrained(folder, subfolder=part, torch_dtype=dtype, use_safetensors=True,
                                        **({"quantization_config": qc} if qc is not None else {}),
                                        **variant_kwargs(folder / part, dtype))
        model = ctx.place(f"{profile.id}/{part}", model)
        if loras:
            apply_loras(model, profile.family, loras, ctx, fuse=not quantized)
        apply_speedups(model, settings)
        return model

    return MODEL_CACHE.get(ctx.key(profile, part, variant, folder=folder), load)


def _load_gguf(base: ModelProfile, gguf_name: str, cls, folder: Path, part: str, dtype, ctx: LoadContext):
    gp = get_profile(gguf_name, key="VITRINE_GEN_GGUF")
    if gp.role != "gguf":
        raise InputError(f"{gguf_name} is not a GGUF profile (it is a {gp.role})", key="VITRINE_GEN_GGUF")
    if gp.base_models and base.id not in gp.base_models:
        raise InputError(f"{gguf_name} is a quantized {', '.join(gp.base_models)}, not {base.id}",
                         key="VITRINE_GEN_GGUF")
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise MissingBackendError("GGUF", "pip install 'gguf>=0.10'") from None
    from diffusers import GGUFQuantizationConfig

    path = gguf_weight_file(gp, model_path(gp, ctx.model_root), ctx.settings.gguf_file)
    return cls.from_single_file(str(path), quantization_config=GGUFQuantizationConfig(compute_dtype=dtype),
                                config=str(folder), subfolder=part, torch_dtype=dtype, local_files_only=True)


def apply_loras(model, family: str, loras: list[tuple[ModelProfile, float]], ctx: LoadContext, *,
                fuse: bool = True) -> None:
    """Load LoRA files into a denoiser (diffusers, kohya and other formats diffusers converts).

    Args:
        model: a FLUX transformer or SDXL UNet.
        family (`str`): ``flux`` or ``sdxl`` (which diffusers LoRA loader converts the file).
        loras (`list[tuple[ModelProfile, float]]`): LoRA profiles and their scales.
        ctx (`LoadContext`): where to find them.
        fuse (`bool`, *optional*, defaults to `True`): fuse into the weights and drop the LoRA layers
            (no per-step cost); otherwise keep them as active adapters.
    """
    names, scales = [], []
    for lp, scale in loras:
        folder = model_path(lp, ctx.model_root)
        name = lp.name.replace("/", "--").replace(":", "--").replace(".", "_")
        if family == "qwen":  # Qwen-Image (e.g. the Lightning few-step LoRAs)
            qwen = _import_class("diffusers", "QwenImagePipeline")
            state_dict = qwen.lora_state_dict(str(folder), weight_name=lp.weight_name, local_files_only=True)
            qwen.load_lora_into_transformer(state_dict, transformer=model, adapter_name=name)
        elif family == "flux":
            out = _import_class("diffusers", "FluxPipeline").lora_state_dict(str(folder), weight_name=lp.weight_name,
                                                         return_alphas=True, local_files_only=True)
            state_dict, alphas = out[0], out[1]
            _import_class("diffusers", "FluxPipeline").load_lora_into_transformer(state_dict, network_alphas=alphas,
                                                              transformer=model, adapter_name=name)
        else:
            out = _import_class("diffusers", "StableDiffusionXLPipeline").lora_state_dict(
                str(folder), weight_name=lp.weight_name, unet_config=model.config, local_files_only=True)
            state_dict, alphas = out[0], out[1]
            _import_class("diffusers", "StableDiffusionXLPipeline").load_lora_into_unet(state_dict, alphas, unet=model,
                                                                    adapter_name=name)
        names.append(name)
        scales.append(float(scale))
    model.set_adapters(names, weights=scales)
    if fuse:
        model.fuse_lora(lora_scale=1.0, adapter_names=names)
        model.unload_lora()
    model.eval()


def load_standalone(profile: ModelProfile, ctx: LoadContext, part: str = "controlnet") -> Any:
    """A model repo with ``config.json`` + weights at its root (a ControlNet, a VAE), cached.

    The class comes from the config's ``_class_name`` (``ControlNetModel``, ``FluxControlNetModel``,
    ``ControlNetUnionModel``, ``AutoencoderKL``...).
    """
    folder = model_path(profile, ctx.model_root)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the model config: {exc}", path=folder / "config.json") from None
    default = "AutoencoderKL" if part == "vae" else "ControlNetModel"
    cls_name = config.get("_class_name", default)
    if part == "controlnet" and profile.family == "sdxl" and profile.control_modes:
        cls_name = "ControlNetUnionModel"  # the union architecture, whatever class name its config carries
    cls = _import_class("diffusers", cls_name)
    dtype = ctx.dtype(profile)

    def load():
        model = cls.from_pretrained(folder, torch_dtype=dtype, use_safetensors=True,
                                    **variant_kwargs(folder, dtype))
        return ctx.place(profile.id, model)

    return MODEL_CACHE.get(ctx.key(profile, part, folder=folder), load)


def load_controlnet(profile: ModelProfile, ctx: LoadContext) -> Any:
    """A ControlNet model repo, cached (see `load_standalone`)."""
    return load_standalone(profile, ctx, "controlnet")


def is_union_controlnet(net) -> bool:
    """Whether a loaded ControlNet takes a control mode (FLUX ``num_mode`` set; SDXL `ControlNetUnionModel`)."""
    if type(net).__name__ == "ControlNetUnionModel":
        return True
    return getattr(getattr(net, "config", None), "num_mode", None) is not None


def controlnet_component(family: str, nets: list) -> Any:
    """The pipeline's ``controlnet`` component for the loaded ControlNets ``nets`` (at least one).

    FLUX: a union ControlNet is wrapped in `FluxMultiControlNetModel` (called with one image and one
    ``control_mode`` per control); a single non-union one (e.g. ``InstantX/FLUX.1-dev-Controlnet-Canny``)
    is used as it is, called with one image, a float scale and no mode: wrapped, diffusers builds an empty
    mode tensor for it and its multi-ControlNet loop never runs (``UnboundLocalError``). Several non-union
    FLUX ControlNets are wrapped, and then need ``control_mode=[None] * n`` (see
    `pipelines.generation.scene.GarmentScenePipeline.control_kwargs`). SDXL: several are wrapped in
    `MultiControlNetModel`, one is used as it is.
    """
    import diffusers

    if family == "flux":
        if len(nets) == 1 and not is_union_controlnet(nets[0]):
            return nets[0]
        return diffusers.FluxMultiControlNetModel(nets)
    if len(nets) > 1:
        return diffusers.MultiControlNetModel(nets)
    return nets[0]


# -------------------------------------------------------------------------------------------- pipelines
def load_pipeline(
    profile: ModelProfile | str,
    *,
    model_root: str | Path | None = None,
    settings: GenerationSettings | None = None,
    pipeline_class: str | None = None,
    base: ModelProfile | str | None = None,
    controlnets: list[ModelProfile] | tuple[ModelProfile, ...] = (),
    components: dict[str, Any] | None = None,
    ctx: LoadContext | None = None,
) -> Any:
    """Assemble a diffusers pipeline from cached components, within the device's memory plan.

    On CUDA the pipeline's models are first added to the device's memory plan (`plan_pipeline`), so each
    is loaded straight to where the plan puts it. An out-of-memory error while loading moves every loaded
    model off the GPU, re-plans one level more frugal and retries once (recorded in the plan's
    ``retries``); a second one raises `GenerationOOMError`. The arguments are `build_pipeline`'s.
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    base = get_profile(base) if isinstance(base, str) else base
    ctx = ctx or LoadContext(model_root, settings or GenerationSettings())
    kwargs = dict(pipeline_class=pipeline_class, base=base, controlnets=controlnets, components=components, ctx=ctx)
    plan_pipeline(profile, base, tuple(controlnets), ctx)
    error = None
    try:
        return build_pipeline(profile, **kwargs)
    except oom_types() as exc:
        error = f"{type(exc).__name__}: {str(exc)[:200]}"  # the traceback (and half-loaded model) is dropped here
    mgr = ctx.manager
    if mgr is None or not mgr.replan_more_frugal("load", f"loading {profile.id}: {error}"):
        raise GenerationOOMError(f"out of GPU memory while loading {profile.id} ({error}); the memory plan is "
                                 "already the most frugal: use a quantized transformer (VITRINE_GEN_QUANTIZE=fp8 "
                                 "or nf4, VITRINE_GEN_GGUF) or free GPU memory")
    try:
        return build_pipeline(profile, **kwargs)
    except oom_types() as exc:
        raise GenerationOOMError(f"out of GPU memory while loading {profile.id} even after re-planning "
                                 f"{mgr.plan.retries[-1]['from']!r} -> {mgr.plan.level!r}: {str(exc)[:200]}") from None


def plan_pipeline(profile: ModelProfile, base: ModelProfile | None, controlnets: tuple, ctx: LoadContext) -> None:
    """Add a pipeline's models (sized from their weight headers) to the device's memory plan (CUDA only)."""
    if not (ctx.device.startswith("cuda") or _PLAN_ANY_DEVICE):
        return
    paths = {profile.name: model_path(profile, ctx.model_root)}
    if base is not None:
        paths[base.name] = model_path(base, ctx.model_root)
    for cn in controlnets:
        paths[cn.name] = model_path(cn, ctx.model_root)
    secondary = base is not None and base is not profile
    ms = ModelSet(family=profile.family, base=base if secondary else profile, controlnets=controlnets,
                  paths=paths)
    models = plan_models(ms, settings=ctx.settings, device=ctx.device, extra=(profile,) if secondary else ())
    if secondary:  # the base's own denoiser is not part of this pipeline: only what it shares with it
        models = [m for m in models if m.shared_by != ["base"]]
    manager_for(ctx.device).ensure(models, family=profile.family, min_level=min_level_for(ctx.settings))


def build_pipeline(
    profile: ModelProfile | str,
    *,
    model_root: str | Path | None = None,
    settings: GenerationSettings | None = None,
    pipeline_class: str | None = None,
    base: ModelProfile | str | None = None,
    controlnets: list[ModelProfile] | tuple[ModelProfile, ...] = (),
    components: dict[str, Any] | None = None,
    ctx: LoadContext | None = None,
) -> Any:
    """Assemble a diffusers pipeline from cached components.

    Args:
        profile (`ModelProfile | str`): the repo whose ``model_index.json`` lists the components
            (a profile or its name), e.g. ``black-forest-labs/FLUX.1-Kontext-dev``.
        model_root (`str | Path`, *optional*): ``DIR/<org>/<name>/`` layout; then the Hugging Face
            cache.
        settings (`GenerationSettings`, *optional*): device, dtype, LoRAs, quantization, offload and
            speed-ups; defaults to `GenerationSettings()` (auto device, no add-ons).
        pipeline_class (`str`, *optional*): the diffusers class to build (e.g. ``FluxControlNetInpaintPipeline``
            over a FLUX.1-dev repo); defaults to the repo's ``_class_name``.
        base (`ModelProfile | str`, *optional*): take the components ``profile.shares`` from this base repo.
        controlnets (`list[ModelProfile]`, *optional*): ControlNets to attach (several are wrapped in the
            family's multi-ControlNet model; a union ControlNet for several controls too, for FLUX).
        components (`dict`, *optional*): components to use as they are (override anything above).
        ctx (`LoadContext`, *optional*): an existing context (takes precedence over model_root/settings).

    Returns:
        A diffusers `DiffusionPipeline` with its progress bar disabled, its models on the settings' device
        (with offload, on the CPU until `prepare_for_call` installs the hooks), the settings' speed-ups
        applied to its denoiser (part of the denoiser's cache key).

    Raises:
        `ModelNotFoundError`: a repo is not found. `InputError`: an unusable combination (the key says
        which setting). `MissingBackendError`: an optional package (torchao, gguf) is missing.
    """
    # 1. Resolve the profiles and the load context
    profile = get_profile(profile) if isinstance(profile, str) else profile
    base = get_profile(base) if isinstance(base, str) else base
    ctx = ctx or LoadContext(model_root, settings or GenerationSettings())
    folder = model_path(profile, ctx.model_root)
    index = read_model_index(folder)
    cls_name = pipeline_class or index.get("_class_name")
    cls = _import_class("diffusers", cls_name)
    accepted = inspect.signature(cls.__init__).parameters

    # 2. Components: shared from the base, else from this repo (all through the cache)
    parts: dict[str, Any] = {}
    base_index = read_model_index(model_path(base, ctx.model_root)) if base is not None else None
    for part, entry in index.items():
        if part.startswith("_") or part not in accepted:
            continue
        if not isinstance(entry, (list, tuple)):  # a pipeline config value (force_zeros_for_empty_prompt...)
            parts[part] = entry
            continue
        if not entry or entry[0] is None:
            parts[part] = None
            continue
        if base is not None and part in profile.shares and base_index is not None and part in base_index:
            parts[part] = load_component(base, part, ctx, index=base_index)
        elif part in DENOISERS:
            parts[part] = load_denoiser(profile, ctx, part=part)
        else:
            parts[part] = load_component(profile, part, ctx, index=index)

    # 3. ControlNets (one, a multi-ControlNet of several, or a union ControlNet for several controls)
    if controlnets:
        if "controlnet" not in accepted:
            raise InputError(f"{cls_name} takes no ControlNet")
        nets = [load_controlnet(cn, ctx) for cn in controlnets]
        parts["controlnet"] = controlnet_component(profile.family, nets)
    for name in ("image_encoder", "feature_extractor"):
        if name in accepted and name not in parts:
            parts[name] = None
    if "requires_aesthetics_score" in accepted and "requires_aesthetics_score" not in parts:
        parts["requires_aesthetics_score"] = profile.role == "refiner"
    parts.update(components or {})

    # 4. Build, then offload hooks or device placement and speed-ups
    pipe = cls(**parts)
    pipe.set_progress_bar_config(disable=True)
    pipe._vitrine_ctx = ctx
    return pipe


def apply_speedups(model, settings: GenerationSettings) -> list[str]:
    """Apply the settings' speed-ups to a denoiser, once (idempotent); returns what was applied.

    `load_denoiser` calls it; the speed-ups are part of the denoiser's cache key, so a model loaded
    without them is never changed behind another user's back.

    - ``fuse_qkv``: fuse the attention Q/K/V projections into one matmul.
    - ``cache_threshold``: first-block caching (skip the remaining blocks while the first block's
      residual changes less than the threshold); transformers only.
    - ``compile``: regional ``torch.compile`` of the repeated blocks (``compile_repeated_blocks``).
    """
    done = getattr(model, "_vitrine_speedups", None)
    if done is not None:
        return done
    done = []
    if settings.fuse_qkv:
        if hasattr(model, "fuse_qkv_projections"):
            model.fuse_qkv_projections()
        else:
            from diffusers.models.attention import AttentionModuleMixin

            for m in model.modules():
                if isinstance(m, AttentionModuleMixin):
                    m.fuse_projections()
        done.append("fuse_qkv")
    if settings.cache_threshold is not None:
        if hasattr(model, "enable_cache"):
            from diffusers.hooks import FirstBlockCacheConfig

            model.enable_cache(FirstBlockCacheConfig(threshold=settings.cache_threshold))
            done.append(f"first_block_cache:{settings.cache_threshold}")
        else:
            logger.warning("%s does not support first-block caching; ignored", type(model).__name__)
    if settings.compile:
        model.compile_repeated_blocks(fullgraph=True)
        done.append("compile_repeated_blocks")
    model._vitrine_speedups = done
    return done


_offload_owner: dict[str, Any] = {}
_offload_lock = threading.Lock()


def prepare_for_call(pipe) -> None:
    """Put a pipeline's models where the call needs them.

    Without offload: on the context's device (they were loaded there). With offload: (re-)install this
    pipeline's offload hooks when another pipeline sharing its models installed its own since.
    """
    ctx: LoadContext | None = getattr(pipe, "_vitrine_ctx", None)
    if ctx is None or not ctx.offload or ctx.manager is not None:  # a memory plan's hooks move the models
        return
    with _offload_lock:
        if _offload_owner.get(ctx.device) is pipe:
            return
        if ctx.settings.offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=ctx.device)
        else:
            pipe.enable_model_cpu_offload(device=ctx.device)
        _offload_owner[ctx.device] = pipe


def enable_offload_now(pipe) -> bool:
    """The run-time out-of-memory fallback: with a memory plan, every model of the process is re-placed one
    level more frugal (`memplan.OffloadManager.replan_more_frugal`, recorded in the plan's ``retries``);
    without one, this pipeline switches to model CPU offload.

    Returns:
        `bool`: whether offload was enabled now (``False`` when already offloading or not on CUDA).
    """
    ctx: LoadContext | None = getattr(pipe, "_vitrine_ctx", None)
    mgr = ctx.manager if ctx is not None else None
    if mgr is not None:  # re-plan every model of the process one level more frugal, not only this pipeline's
        return mgr.replan_more_frugal("run", f"{type(pipe).__name__} call")
    if ctx is None or ctx.offload or not ctx.device.startswith("cuda"):
        return False
    pipe.enable_model_cpu_offload(device=ctx.device)
    empty_cuda_cache()
    return True


def snapshot_fingerprint(folder: Path) -> str:
    """A cheap identity of a snapshot: sha256 over its files' relative paths and sizes, and the bytes of
    its small JSON files (configs). Changes when weights are swapped for others of another size or config.
    """
    import hashlib

    h = hashlib.sha256()
    marker = read_marker(folder)
    if marker is not None:  # a single file's config folder: the file (name, size, header), configs, components
        h.update(json.dumps(marker, sort_keys=True).encode())
        for src in sorted(set(marker["components"].values())):
            h.update(snapshot_fingerprint(Path(src)).encode() if Path(src).is_dir() else src.encode())
        folder_files = [p for p in folder.rglob("*.json") if not p.is_symlink()]
        for path in sorted(folder_files):
            h.update(path.read_bytes())
        return h.hexdigest()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = path.relative_to(folder).as_posix()
        size = path.stat().st_size
        h.update(f"{rel}\0{size}\n".encode())
        if path.suffix == ".json" and size < 1_000_000:
            h.update(path.read_bytes())
    return h.hexdigest()
