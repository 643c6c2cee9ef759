"""Which models a generative engine uses, chosen from what is found (nothing is loaded here).

`resolve_model_set` looks each candidate up with `pipelines.models.location.find` (file checks only),
so engine probes stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import InputError
from pipelines.models.location import ModelNotFoundError, gguf_weight_file, locate
from pipelines.models.profiles import ModelProfile, get_profile, list_profiles
from pipelines.models.single_file import SingleFileIncompleteError, find_model, locate_model
from pipelines.generation.settings import GenerationSettings, parse_lora

#: The controls a scene is generated under: the pose skeleton and the kept subject's edges.
CONTROL_TYPES = ("openpose", "canny")


@dataclass
class ModelSet:
    """The models one engine runs with.

    Attributes:
        family (`str`): ``flux`` or ``sdxl``.
        base (`ModelProfile`): the text-to-image base (its denoiser generates the scenes).
        controlnets (`tuple[ModelProfile, ...]`): ControlNets for ``openpose`` and ``canny`` (one union
            model, or one per control); empty when none is found (generation is then unconstrained
            outside the kept subject).
        seam (`ModelProfile`, *optional*): the seam-band inpainting model (FLUX Fill, SDXL inpainting);
            ``None`` = inpaint with the base.
        loras (`tuple[tuple[ModelProfile, float], ...]`): LoRAs fused into the base and their scales.
        gguf (`ModelProfile`, *optional*): the GGUF file the base transformer is loaded from.
        refiner (`ModelProfile`, *optional*): the SDXL refiner, when asked for and found.
        vae (`ModelProfile`, *optional*): a replacement VAE (fp16-safe SDXL VAE), used in float16.
        paths (`dict[str, Path]`): profile name -> snapshot folder.
    """

    family: str
    base: ModelProfile
    controlnets: tuple[ModelProfile, ...] = ()
    seam: ModelProfile | None = None
    loras: tuple[tuple[ModelProfile, float], ...] = ()
    gguf: ModelProfile | None = None
    refiner: ModelProfile | None = None
    vae: ModelProfile | None = None
    paths: dict[str, Path] | None = None

    def profiles(self) -> list[ModelProfile]:
        """Every model in the set (base first)."""
        out = [self.base, *self.controlnets]
        out += [p for p in (self.seam, self.gguf, self.refiner, self.vae) if p is not None]
        out += [lp for lp, _ in self.loras]
        return out

    def non_commercial(self) -> list[ModelProfile]:
        """The models whose licence does not allow commercial use."""
        return [p for p in self.profiles() if not p.commercial]

    def control_modes(self) -> dict[str, int] | None:
        """For one union ControlNet: control type -> mode index; else ``None``."""
        if len(self.controlnets) == 1 and self.controlnets[0].control_modes:
            return self.controlnets[0].control_modes
        return None

    def controlnet_for(self) -> dict[str, ModelProfile]:
        """Control type -> the ControlNet that takes it."""
        out: dict[str, ModelProfile] = {}
        for cn in self.controlnets:
            for c in cn.controls:
                if c in CONTROL_TYPES and c not in out:
                    out[c] = cn
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "base": self.base.name,
            "controlnets": [p.name for p in self.controlnets],
            "seam": self.seam.name if self.seam else None,
            "loras": [[p.name, s] for p, s in self.loras],
            "gguf": self.gguf.name if self.gguf else None,
            "refiner": self.refiner.name if self.refiner else None,
            "vae": self.vae.name if self.vae else None,
        }


def _found(profile: ModelProfile, model_root) -> Path | None:
    """The folder of ``profile`` (a base found as a single file: its config folder), or ``None``."""
    loc = find_model(profile, model_root)
    return loc.path if loc else None


@dataclass
class _Choice:
    """What `resolve_model_set` has chosen so far: the family, where to look, and the found models' folders."""

    family: str
    model_root: str | Path | None
    commercial_only: bool
    paths: dict[str, Path]
    base: ModelProfile | None = None

    def allowed(self, p: ModelProfile, key: str | None = None) -> bool:
        """Whether ``p``'s licence suits the batch; asked for explicitly (``key``), refuse rather than drop it."""
        if not self.commercial_only or p.commercial:
            return True
        if key is not None:
            raise InputError(f"{p.name} ({p.licence}) does not allow commercial use", key=key)
        return False

    def fits(self, p: ModelProfile) -> bool:
        """Made for the chosen base (or for any base) and allowed."""
        return (not p.base_models or self.base.id in p.base_models) and self.allowed(p)

    def locate(self, p: ModelProfile, *, revision: bool = True) -> Path:
        """The folder of ``p`` (raises `ModelNotFoundError`), recorded in `paths`."""
        kwargs = {"revision": p.revision} if revision else {}
        self.paths[p.name] = locate(p.id, self.model_root, required_files=p.required_files, **kwargs).path
        return self.paths[p.name]

    def first_found(self, profiles: list[ModelProfile]) -> ModelProfile | None:
        """The first of ``profiles`` that fits and is found, recorded in `paths`."""
        for p in profiles:
            path = _found(p, self.model_root) if self.fits(p) else None
            if path is not None:
                self.paths[p.name] = path
                return p
        return None


def _choose_base(c: _Choice, settings: GenerationSettings) -> ModelProfile:
    """Step 1: the base model: the one the settings name, else the first found."""
    if settings.base:
        base = get_profile(settings.base, key="VITRINE_GEN_BASE")
        if base.family != c.family or base.role != "base":
            raise InputError(f"{settings.base} is not a {c.family} base model", key="VITRINE_GEN_BASE")
        c.allowed(base, "VITRINE_GEN_BASE")
        c.paths[base.name] = locate_model(base, c.model_root).path
        return base
    bases = [p for p in list_profiles(c.family, "base") if c.allowed(p)]
    incomplete: SingleFileIncompleteError | None = None
    for cand in bases:
        try:
            c.paths[cand.name] = locate_model(cand, c.model_root).path
            return cand
        except SingleFileIncompleteError as exc:  # found as a single file, without what it needs beside it
            incomplete = incomplete or exc
        except ModelNotFoundError:
            continue
    if incomplete is not None:
        raise incomplete
    first = bases[0] if bases else list_profiles(c.family, "base")[0]
    locate_model(first, c.model_root)  # raises ModelNotFoundError
    raise InputError(f"{first.id} is found but not usable here")  # pragma: no cover


def _choose_controlnets(c: _Choice) -> list[ModelProfile]:
    """Step 2: ControlNets: a union model covering both controls, else one per control."""
    controlnets: list[ModelProfile] = []
    candidates = [p for p in list_profiles(c.family, "controlnet") if c.fits(p)]
    found = [(p, path) for p in candidates if (path := _found(p, c.model_root)) is not None]
    union = next(((p, path) for p, path in found
                  if all(t in p.controls for t in CONTROL_TYPES) and p.control_modes), None)
    if union is not None and c.family == "flux":
        c.paths[union[0].name] = union[1]
        return [union[0]]
    for control in CONTROL_TYPES:
        single = next(((p, path) for p, path in found if control in p.controls and not p.control_modes), None)
        if single is not None and single[0] not in controlnets:
            controlnets.append(single[0])
            c.paths[single[0].name] = single[1]
    covered = {t for p in controlnets for t in p.controls}
    if union is not None and not all(t in covered for t in CONTROL_TYPES):
        # SDXL: the single-control models when they cover pose and edges, else the union model
        # (xinsir/controlnet-union-sdxl-1.0: ControlNetUnionModel, one model for both)
        for p in controlnets:
            c.paths.pop(p.name, None)
        controlnets = [union[0]]
        c.paths[union[0].name] = union[1]
    return controlnets


def _choose_seam(c: _Choice) -> ModelProfile | None:
    """Step 3: the seam inpainting model: a Fill model, else an inpainting one."""
    for role in ("fill", "inpaint"):
        seam = c.first_found(list_profiles(c.family, role))
        if seam is not None:
            return seam
    return None


def _choose_loras(c: _Choice, settings: GenerationSettings) -> list[tuple[ModelProfile, float]]:
    """Step 4a: the LoRAs the settings name, with their scales."""
    loras = []
    for item in settings.loras:
        name, scale = parse_lora(item)
        lp = get_profile(name, key="VITRINE_GEN_LORAS")
        if lp.family != c.family or lp.role != "lora":
            raise InputError(f"{name} is not a {c.family} LoRA", key="VITRINE_GEN_LORAS")
        c.allowed(lp, "VITRINE_GEN_LORAS")
        if lp.base_models and c.base.id not in lp.base_models:
            raise InputError(f"{lp.name} is a LoRA for {', '.join(lp.base_models)}, not {c.base.id}",
                             key="VITRINE_GEN_LORAS")
        c.locate(lp)
        loras.append((lp, scale if scale is not None else lp.lora_scale))
    return loras


def _choose_gguf(c: _Choice, settings: GenerationSettings) -> ModelProfile | None:
    """Step 4b: the GGUF transformer the settings name."""
    if not settings.gguf:
        return None
    gguf = get_profile(settings.gguf, key="VITRINE_GEN_GGUF")
    if gguf.family != c.family or gguf.role != "gguf":
        raise InputError(f"{settings.gguf} is not a {c.family} GGUF transformer", key="VITRINE_GEN_GGUF")
    c.allowed(gguf, "VITRINE_GEN_GGUF")
    if gguf.base_models and c.base.id not in gguf.base_models:
        raise InputError(f"{gguf.name} is a quantized {', '.join(gguf.base_models)}, not {c.base.id}",
                         key="VITRINE_GEN_GGUF")
    gguf_weight_file(gguf, c.locate(gguf, revision=False), settings.gguf_file)  # which file: checked at start
    return gguf


def _choose_refiner(c: _Choice, settings: GenerationSettings) -> ModelProfile | None:
    """Step 4c: the refiner, when the settings ask for one."""
    if not settings.refiner:
        return None
    refs = [p for p in list_profiles(c.family, "refiner") if c.fits(p)]
    if not refs:
        raise InputError(f"no refiner is known for {c.family}", key="VITRINE_GEN_REFINER")
    c.locate(refs[0], revision=False)
    return refs[0]


def resolve_model_set(family: str, model_root: str | Path | None, settings: GenerationSettings, *,
                      commercial_only: bool = False) -> ModelSet:
    """Choose the models of a ``family`` engine among those found.

    Order of preference is registration order (`pipelines.models.generation_models`): for FLUX the
    dev base, a union ControlNet (pose + canny in one), FLUX Fill for seams; for SDXL the base, the
    xinsir openpose + canny ControlNets (or, when they are not both found, the xinsir union ControlNet),
    the SDXL inpainting model for seams.

    Args:
        family (`str`): ``flux`` or ``sdxl``.
        model_root (`str | Path`, *optional*): where to look (then the HF cache).
        settings (`GenerationSettings`): ``base``, ``loras``, ``gguf``, ``refiner`` choices.
        commercial_only (`bool`, *optional*, defaults to `False`): only models whose licence allows
            commercial use (for SKUs marked ``commercial: true``). FLUX then means FLUX.1-schnell without
            ControlNets (every FLUX ControlNet is dev-licensed) and with schnell inpainting for seams.

    Returns:
        `ModelSet`.

    Raises:
        `ModelNotFoundError`: no (commercially usable) base of the family is found, or the asked-for
            base/LoRA/GGUF is not.
        `InputError`: a setting names a profile of another family or role, or (``commercial_only``) a
            non-commercial one.
    """
    c = _Choice(family, model_root, commercial_only, paths={})
    c.base = _choose_base(c, settings)  # 1. the base
    controlnets = _choose_controlnets(c)  # 2. pose + edges ControlNets
    seam = _choose_seam(c)  # 3. the seam inpainting model
    loras = _choose_loras(c, settings)  # 4. add-ons the settings ask for: LoRAs, GGUF, refiner, fp16 VAE
    gguf = _choose_gguf(c, settings)
    refiner = _choose_refiner(c, settings)
    vae = c.first_found(list_profiles(family, "vae"))
    return ModelSet(family=family, base=c.base, controlnets=tuple(controlnets), seam=seam, loras=tuple(loras),
                    gguf=gguf, refiner=refiner, vae=vae, paths=c.paths)


def probe_model_set(family: str, model_root: str | Path | None,
                    settings: GenerationSettings | None = None) -> tuple[ModelSet | None, str]:
    """`resolve_model_set` that reports instead of raising: ``(model set or None, reason)``."""
    try:
        settings = settings or GenerationSettings()
        ms = resolve_model_set(family, model_root, settings)
    except SingleFileIncompleteError as exc:
        return None, str(exc)
    except ModelNotFoundError:
        names = ", ".join(p.id for p in list_profiles(family, "base"))
        where = f"under {model_root}" if model_root is not None else "(no --model-root; HF cache searched)"
        return None, f"no {family} base model ({names}) found {where}"
    except InputError as exc:
        return None, str(exc)
    cn = ", ".join(p.id for p in ms.controlnets) or "no ControlNet (unconstrained generation)"
    seam = ms.seam.id if ms.seam else f"{ms.base.id} inpainting"
    return ms, f"found {ms.base.id} with {cn}; seams by {seam}"
