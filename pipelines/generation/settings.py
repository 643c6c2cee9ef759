"""Generation settings: device, dtype, steps, LoRAs, quantization, offload, speed-ups.

Every field is recorded in the manifest (``engine.settings``) and in each SKU's content hash. The CLI
and the flows take them from ``VITRINE_GEN_*`` environment variables or the config file's ``[generation]``
table, through `pipelines.settings.load_settings` (`VitrineSettings.generation`); Python callers build a
`GenerationSettings` directly and pass it to the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pipelines.errors import InputError

OFFLOAD_MODES = ("none", "model", "sequential")
QUANTIZE_MODES = ("fp8", "int8", "nf4")
DTYPES = ("auto", "float32", "bfloat16", "float16")
ENV_PREFIX = "VITRINE_GEN_"


@dataclass(frozen=True)
class GenerationSettings:
    """How the generative engines run.

    Attributes:
        device (`str`, *optional*, defaults to ``"auto"``): ``auto`` (CUDA when present, else CPU), ``cpu``,
            ``cuda``, ``cuda:N`` or ``mps``.
        dtype (`str`, *optional*, defaults to ``"auto"``): ``auto`` = the profile's dtype on a GPU and
            ``float32`` on a CPU; or ``float32``, ``bfloat16``, ``float16``.
        base (`str`, *optional*): the base model's repo id (e.g. ``black-forest-labs/FLUX.1-schnell``);
            default: the first registered base found.
        steps (`int`, *optional*): denoising steps of scene generation; default: the LoRA's or base's.
        guidance (`float`, *optional*): guidance scale of scene generation; default: the LoRA's or base's.
        seam_steps (`int`, *optional*): denoising steps of seam inpainting; default: the seam model's.
        seam_strength (`float`, *optional*): strength of seam inpainting in (0, 1]; default: the seam
            model's (1.0 for FLUX Fill, 0.99 for SDXL inpainting, 0.85 for a base model's inpainting).
        controlnet_scale (`tuple[float, float]`, *optional*, defaults to (0.8, 0.6)): conditioning scales of
            the pose and the edge control, each in [0, 2].
        negative_prompt (`str`, *optional*): default negative prompt (SDXL only; FLUX has no CFG).
        loras (`tuple[str, ...]`, *optional*, defaults to ()): LoRA profile names, each optionally
            ``name@scale``; fused into the denoiser at load.
        gguf (`str`, *optional*): a GGUF profile name: load the base's transformer from that file.
        gguf_file (`str`, *optional*): which ``.gguf`` file of the GGUF profile's folder (e.g.
            ``flux1-dev-Q4_K_S.gguf``); by default the profile's file (Q8_0) when present, else the only
            ``<name>-*.gguf`` there (several: an error listing them).
        single_file (`bool`, *optional*, defaults to `False`): load the base's denoiser from its single
            ``.safetensors`` file (``ModelProfile.single_file``) instead of the diffusers folder.
        quantize (`str`, *optional*): ``fp8`` or ``int8`` weight quantization of the denoiser (needs torchao),
            or ``nf4`` (4-bit NormalFloat, needs bitsandbytes and a CUDA GPU).
        offload (`str`, *optional*, defaults to ``"none"``): ``model`` (whole models move to the GPU when
            used) or ``sequential`` (layer by layer; slowest, least memory) CPU offload; GPU only.
        compile (`bool`, *optional*, defaults to `False`): regional ``torch.compile`` of the repeated blocks.
        fuse_qkv (`bool`, *optional*, defaults to `False`): fuse attention QKV projections.
        cache_threshold (`float`, *optional*): enable first-block caching with this threshold (e.g. 0.12).
        work_side (`int`, *optional*): generation resolution as the side of a square of equal area; default:
            the model's native resolution (its VAE's ``sample_size``: 1024 for FLUX.1 and SDXL).
        refiner (`bool`, *optional*, defaults to `False`): run the SDXL refiner on generated scenes.
        allow_cpu (`bool`, *optional*, defaults to `False`): let ``auto`` pick a full-size model on a CPU.
    """

    device: str = "auto"
    dtype: str = "auto"
    base: str | None = None
    steps: int | None = None
    guidance: float | None = None
    seam_steps: int | None = None
    seam_strength: float | None = None
    controlnet_scale: tuple[float, float] = (0.8, 0.6)
    negative_prompt: str | None = None
    loras: tuple[str, ...] = field(default_factory=tuple)
    gguf: str | None = None
    gguf_file: str | None = None
    single_file: bool = False
    quantize: str | None = None
    offload: str = "none"
    compile: bool = False
    fuse_qkv: bool = False
    cache_threshold: float | None = None
    work_side: int | None = None
    refiner: bool = False
    allow_cpu: bool = False

    def __post_init__(self) -> None:
        def bad(name: str, msg: str):
            raise InputError(msg, key=ENV_PREFIX + name.upper())

        if self.dtype not in DTYPES:
            bad("dtype", f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            bad("device", f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.steps is not None and not 1 <= self.steps <= 200:
            bad("steps", f"steps must be in [1, 200], got {self.steps}")
        if self.seam_steps is not None and not 1 <= self.seam_steps <= 200:
            bad("seam_steps", f"seam_steps must be in [1, 200], got {self.seam_steps}")
        if self.guidance is not None and not 0 <= self.guidance <= 100:
            bad("guidance", f"guidance must be in [0, 100], got {self.guidance}")
        if self.seam_strength is not None and not 0 < self.seam_strength <= 1:
            bad("seam_strength", f"seam_strength must be in (0, 1], got {self.seam_strength}")
        if len(self.controlnet_scale) != 2 or not all(0 <= s <= 2 for s in self.controlnet_scale):
            bad("controlnet_scale", f"controlnet_scale must be two numbers in [0, 2], got {self.controlnet_scale}")
        if self.offload not in OFFLOAD_MODES:
            bad("offload", f"offload must be one of {', '.join(OFFLOAD_MODES)}, got {self.offload!r}")
        if self.quantize is not None and self.quantize not in QUANTIZE_MODES:
            bad("quantize", f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {self.quantize!r}")
        if self.quantize is not None and self.gguf is not None:
            bad("quantize", "choose either quantize (torchao/bitsandbytes) or gguf, not both")
        if self.gguf_file is not None and self.gguf is None:
            bad("gguf_file", "gguf_file names a file of the GGUF profile: set gguf too (e.g. city96/FLUX.1-dev-gguf)")
        if self.gguf_file is not None and (not self.gguf_file.endswith(".gguf") or "/" in self.gguf_file
                                           or "\\" in self.gguf_file):
            bad("gguf_file", f"gguf_file must be a .gguf file name inside the GGUF profile's folder, got "
                             f"{self.gguf_file!r}")
        if self.cache_threshold is not None and not 0 < self.cache_threshold < 1:
            bad("cache_threshold", f"cache_threshold must be in (0, 1), got {self.cache_threshold}")
        if self.work_side is not None and not 16 <= self.work_side <= 4096:
            bad("work_side", f"work_side must be in [16, 4096] pixels, got {self.work_side}")
        for item in self.loras:
            parse_lora(item)

    def replace(self, **changes: Any) -> GenerationSettings:
        """A copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> GenerationSettings:
        """Settings from the ``VITRINE_GEN_<FIELD>`` variables of ``environ`` (unset ones keep their defaults).

        Booleans take ``1/0/true/false/yes/no``; ``LORAS`` is a comma-separated list of ``name[@scale]``;
        ``CONTROLNET_SCALE`` is ``pose,edges``.

        Raises:
            `InputError`: a bad value or an unknown ``VITRINE_GEN_*`` variable (the key names it).
        """
        kwargs: dict[str, Any] = {}
        for name, value in environ.items():
            if name.startswith(ENV_PREFIX):
                fname = name[len(ENV_PREFIX):].lower()
                kwargs[fname] = parse_setting(fname, value.strip(), name)
        return cls(**kwargs)


def parse_setting(fname: str, value: str, key: str) -> Any:
    """The typed value of field ``fname`` from its text form (as in ``VITRINE_GEN_<FIELD>``).

    Raises:
        `InputError`: an unknown field or a value that does not parse (``key`` names where it came from).
    """
    fields = GenerationSettings.__dataclass_fields__
    if fname not in fields:
        raise InputError(f"unknown setting; known: {', '.join(ENV_PREFIX + f.upper() for f in fields)}", key=key)
    default = fields[fname].default
    try:
        if fname in ("loras",):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if fname == "controlnet_scale":
            parts = [float(v) for v in value.split(",")]
            return tuple(parts)
        if fname in ("single_file", "compile", "fuse_qkv", "refiner", "allow_cpu"):
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if fname in ("steps", "seam_steps", "work_side"):
            return int(value) if value else None
        if fname in ("guidance", "seam_strength", "cache_threshold"):
            return float(value) if value else None
    except ValueError:
        raise InputError(f"cannot parse {value!r} (default {default!r})", key=key) from None
    if default is None:  # optional text settings (base, gguf, gguf_file, quantize, ...): empty = unset
        return value or None
    return value


def parse_lora(item: str) -> tuple[str, float | None]:
    """``name[@scale]`` → (name, scale or None).

    Raises:
        `InputError`: the scale is not a number in (0, 4].
    """
    name, _, scale = item.partition("@")
    if not name:
        raise InputError(f"empty LoRA name in {item!r}", key=ENV_PREFIX + "LORAS")
    if not scale:
        return name, None
    try:
        s = float(scale)
    except ValueError:
        raise InputError(f"LoRA scale in {item!r} is not a number", key=ENV_PREFIX + "LORAS") from None
    if not 0 < s <= 4:
        raise InputError(f"LoRA scale in {item!r} must be in (0, 4]", key=ENV_PREFIX + "LORAS")
    return name, s
