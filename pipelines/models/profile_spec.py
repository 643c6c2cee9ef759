"""What a generation model profile is: how Vitrine loads and runs a FLUX / SDXL model.

A profile is the generation-specific half of a model's registration. Registering a profile also
registers its `pipelines.models.registry.ModelSpec` (repo id, family, licence, revision, the files of a
complete snapshot), so ``vitrine models`` and the licence checks see every generation model in the one
model registry. The concrete profiles live in `pipelines.models.generation_models`; look them up with
`pipelines.models.profiles.get_profile`.

Roles:

- ``base``: a text-to-image pipeline repo (FLUX.1-dev, FLUX.1-schnell, SDXL base).
- ``fill``: FLUX.1-Fill-dev (an inpainting transformer; shares text encoders and VAE with the base).
- ``inpaint``: an SDXL inpainting pipeline repo (9-channel UNet).
- ``kontext``: FLUX.1-Kontext-dev (instruction editing).
- ``control``: a FLUX Control pipeline repo (FLUX.1-Canny-dev / -Depth-dev: control latents concatenated).
- ``controlnet``: a ControlNet model repo (``config.json`` + weights); ``controls`` names what it takes.
- ``refiner``: the SDXL refiner pipeline repo.
- ``lora``: a LoRA file; few-step distills carry the ``steps``, ``guidance`` and ``scheduler`` they need.
- ``gguf``: a GGUF-quantized transformer file for a base (diffusers' GGUF support).
- ``vae``: a replacement VAE (e.g. the fp16-safe SDXL VAE).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.models import registry

ROLES = ("base", "fill", "inpaint", "kontext", "control", "controlnet", "refiner", "lora", "gguf", "vae")
FAMILIES = ("flux", "sdxl", "qwen")


@dataclass(frozen=True)
class ModelProfile:
    """How to load and run one generation model.

    Attributes:
        id (`str`): Hugging Face repo id ``org/name`` (also the folder under ``--model-root``).
        family (`str`): ``flux``, ``sdxl`` or ``qwen`` (Qwen-Image): the base architecture this model belongs to.
        role (`str`): one of `ROLES` (see the module docstring).
        licence (`str`): the licence published with the weights.
        commercial (`bool`): whether that licence allows commercial use.
        revision (`str`, *optional*): a pinned revision (commit or tag); ``None`` = the snapshot found.
        dtype (`str`, *optional*, defaults to ``"bfloat16"``): compute dtype on a GPU (``bfloat16`` or
            ``float16``); on a CPU Vitrine always computes in ``float32``.
        pipeline (`str`, *optional*): the diffusers pipeline class this repo is laid out for
            (``FluxPipeline``, ``FluxFillPipeline``, ``StableDiffusionXLInpaintPipeline``...).
        weight_name (`str`, *optional*): the file inside the repo for ``lora``, ``gguf`` and single-file
            checkpoints (``single_file`` below is the single file of a ``base`` repo).
        single_file (`str`, *optional*): a single ``.safetensors`` checkpoint of the denoiser inside a
            ``base`` repo (e.g. ``flux1-dev.safetensors``), loadable with ``from_single_file``.
        steps (`int`, *optional*): default number of denoising steps.
        guidance (`float`, *optional*): default guidance scale (CFG for SDXL; distilled guidance for FLUX).
        strength (`float`, *optional*): default img2img/inpaint strength in (0, 1].
        max_sequence_length (`int`, *optional*): T5 prompt length for FLUX models.
        scheduler (`dict`, *optional*): ``{"class": name, **config overrides}`` a few-step LoRA needs.
        timesteps (`tuple[int, ...]`, *optional*): explicit timesteps a distill needs (DMD2).
        lora_scale (`float`, *optional*, defaults to 1.0): the scale a LoRA is fused with.
        controls (`tuple[str, ...]`): for ControlNets, the control images it takes (``openpose``, ``canny``).
        control_modes (`dict[str, int]`): for union ControlNets, the mode index of each control type.
        base_models (`tuple[str, ...]`): for add-ons (ControlNet, LoRA, GGUF, Fill...), the bases it fits.
        shares (`tuple[str, ...]`): pipeline components identical to the base's (loaded once, shared).
        alternatives (`tuple[str, ...]`): commercially usable alternatives to name when this is refused.
        required_files (`tuple[str, ...]`): files whose presence marks a complete snapshot.
        description (`str`): one line for ``vitrine models``.
        name (`str`, *optional*): the profile's key when one repo holds several models (e.g.
            ``ByteDance/Hyper-SD:sdxl-8step``); defaults to ``id``.
    """

    id: str
    family: str
    role: str
    licence: str
    commercial: bool
    revision: str | None = None
    dtype: str = "bfloat16"
    pipeline: str | None = None
    weight_name: str | None = None
    single_file: str | None = None
    steps: int | None = None
    guidance: float | None = None
    strength: float | None = None
    max_sequence_length: int | None = None
    scheduler: dict[str, Any] | None = None
    timesteps: tuple[int, ...] | None = None
    lora_scale: float = 1.0
    controls: tuple[str, ...] = ()
    control_modes: dict[str, int] = field(default_factory=dict)
    base_models: tuple[str, ...] = ()
    shares: tuple[str, ...] = ()
    alternatives: tuple[str, ...] = ()
    required_files: tuple[str, ...] = ()
    description: str = ""
    name: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"profile {self.id}: family must be one of {FAMILIES}, got {self.family!r}")
        if self.role not in ROLES:
            raise ValueError(f"profile {self.id}: role must be one of {ROLES}, got {self.role!r}")
        if self.dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"profile {self.id}: dtype must be bfloat16, float16 or float32, got {self.dtype!r}")
        if self.role in ("lora", "gguf") and not self.weight_name:
            raise ValueError(f"profile {self.id}: a {self.role} profile needs weight_name")
        if not self.required_files:
            object.__setattr__(self, "required_files", _default_required_files(self))
        if not self.name:
            object.__setattr__(self, "name", self.id)

    @property
    def registry_family(self) -> str:
        """The family name used in the model registry: ``flux``, ``flux-controlnet``, ``sdxl-lora``..."""
        return self.family if self.role == "base" else f"{self.family}-{self.role}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (recorded in manifests)."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def gguf_pattern(p: ModelProfile) -> str:
    """The file names a GGUF profile's folder may hold: its ``weight_name`` with the quantization replaced by
    ``*`` (``flux1-dev-Q8_0.gguf`` -> ``flux1-dev-*.gguf``: Q4_K_S, Q5_K_M, Q6_K, F16... as published)."""
    stem = str(p.weight_name).rsplit("-", 1)[0]
    return f"{stem}-*.gguf"


def _default_required_files(p: ModelProfile) -> tuple[str, ...]:
    if p.role == "gguf":
        return (gguf_pattern(p),)
    if p.role == "lora":
        return (p.weight_name,)  # type: ignore[return-value]
    if p.role in ("controlnet", "vae"):
        return ("config.json",)
    return ("model_index.json",)


_PROFILES: dict[str, ModelProfile] = {}


def register_profile(profile: ModelProfile) -> ModelProfile:
    """Register (or replace) a profile and its `ModelSpec` in the model registry; returns it."""
    registry.register(registry.ModelSpec(
        id=profile.id,
        family=profile.registry_family,
        licence=profile.licence,
        commercial=profile.commercial,
        required_files=profile.required_files,
        revision=profile.revision,
        description=profile.description,
        alternatives=profile.alternatives,
        key=profile.name,
    ))
    _PROFILES[profile.name] = profile
    return profile


def registered_profiles() -> dict[str, ModelProfile]:
    """The profiles registered so far, by name, in registration order (every known one: `pipelines.models.profiles`)."""
    return dict(_PROFILES)
