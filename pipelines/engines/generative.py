"""The generative engines ``flux`` and ``sdxl``: the classic stages (pose, edges, white backgrounds, seams on
white) with a `SceneGenerator` as the background stage, and grounded-sam segmentation when its models are
found (classic otherwise; `pipelines.segmentation.api.best_segmenter`). The generator:

- a garment shot on a plain background (``garment_type`` upper/outerwear/dress/lower) gets lifestyle
  images *on a model*: the garment is placed where a standing pose template wears it, and the person
  and scene are generated around it under the template's OpenPose skeleton and the garment's edges;
- a person photo, or any other product, gets lifestyle *scenes*: the subject is kept, the background is
  generated around it (under the person's own pose and the subject's edges) with a contact shadow;
- main and alternate images stay on procedural pure white (marketplace rules), as in the classic engine.

In every case the subject's pixels are composited back bit for bit and only the seam band is inpainted
(`pipelines.generation.scene.GarmentScenePipeline`); `pipelines.catalog.guarantee` verifies it before writing.
Models load lazily on the first generated output, once per process (`pipelines.generation.loading`).

This module is imported by ``vitrine`` at start-up (the engine registry): it imports no torch/diffusers
at module level.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.controls.pose import PoseResult
from pipelines.controls.backend import ClassicControls
from pipelines.engines.bundle import Composed, Compositor, Engine, EngineEntry, OutputRequest
from pipelines.engines.classic import ClassicBackgrounds, ClassicSeams, classic_compose
from pipelines.errors import InputError
from pipelines.models.location import ModelNotFoundError
from pipelines.models.single_file import read_marker
from pipelines.generation.modelset import CONTROL_TYPES, ModelSet, probe_model_set, resolve_model_set
from pipelines.generation.settings import GenerationSettings
from pipelines.controls.templates import ON_MODEL_TYPES, map_pose, on_model_placement, template_pose
from pipelines.segmentation.api import best_segmenter
from pipelines.segmentation.subject import Segmenter

if TYPE_CHECKING:
    from pipelines.compositing.composite import Placement
    from pipelines.generation.scene import GarmentScenePipeline, SceneParams

logger = logging.getLogger(__name__)

#: Scene descriptions per background kind (``product.yaml`` ``prompts.scene`` replaces them).
BACKDROPS = {
    "studio": "in a bright photo studio with a seamless light grey backdrop, soft diffused light",
    "texture": "in front of a softly textured neutral plaster wall, natural window light",
}
DEFAULT_NEGATIVE = "lowres, blurry, deformed hands, extra limbs, extra fingers, text, watermark, logo"
GENERATOR_CLASSES = {
    ("flux", True): "FluxControlNetInpaintPipeline",
    ("flux", False): "FluxInpaintPipeline",
    ("sdxl", True): "StableDiffusionXLControlNetInpaintPipeline",
    ("sdxl", False): "StableDiffusionXLInpaintPipeline",
}
#: The SDXL pipeline for one union ControlNet (``ControlNetUnionModel``: images + control modes).
SDXL_UNION_GENERATOR = "StableDiffusionXLControlNetUnionInpaintPipeline"


def generator_class(family: str, ms: ModelSet) -> str:
    """The diffusers pipeline class that generates scenes with ``ms``'s ControlNets."""
    if family == "sdxl" and ms.control_modes():
        return SDXL_UNION_GENERATOR
    return GENERATOR_CLASSES[(family, bool(ms.controlnets))]


#: Denoiser weights larger than this count as a full-size model (impractical on a CPU).
FULL_SIZE_BYTES = 1 << 30


def output_mode(request: OutputRequest) -> str:
    """``classic`` (white backgrounds), ``on-model`` (a worn garment) or ``scene`` (keep the subject)."""
    if request.background == "white":
        return "classic"
    if request.subject.kind == "product" and request.product.spec.garment_type in ON_MODEL_TYPES:
        return "on-model"
    return "scene"


def scene_prompts(mode: str, request: OutputRequest, settings: GenerationSettings) -> tuple[str, str]:
    """The (prompt, negative prompt) of a generated output, from ``product.yaml`` ``prompts`` and defaults."""
    spec = request.product.spec
    p = spec.prompts
    scene = p.scene or BACKDROPS.get(request.background, f"{request.background} background")
    garment = p.garment or spec.title or (f"{spec.garment_type} garment" if spec.garment_type else "product")
    if mode == "on-model":
        person = p.person or "natural relaxed standing pose"
        prompt = (f"a fashion model wearing a {garment}, {person}, full body, {scene}, "
                  "professional e-commerce photo, sharp focus")
    elif request.subject.kind == "person":
        prompt = f"{p.person or 'a person'}, {scene}, professional fashion photo, sharp focus"
    else:
        prompt = f"a {garment}, {scene}, product photography, soft contact shadow, sharp focus"
    negative = p.negative or settings.negative_prompt or DEFAULT_NEGATIVE
    return prompt, negative


class SceneGenerator:
    """The background stage of the ``flux`` and ``sdxl`` engines: lifestyle outputs generated by FLUX.1 or
    SDXL around the kept subject, main and alternate images procedural (`ClassicBackgrounds`).

    Args:
        family (`str`): ``flux`` or ``sdxl``.
        model_root (`str | Path`, *optional*): ``DIR/<org>/<name>/`` layout; then the Hugging Face cache.
        settings (`GenerationSettings`, *optional*): defaults to `GenerationSettings()` (the CLI and flows
            pass `VitrineSettings.generation`: ``VITRINE_GEN_*``, the config file).
        model_set (`ModelSet`, *optional*): the models to use; defaults to `resolve_model_set` of the family.

    Raises:
        `ModelNotFoundError`: no base model of the family is found. `InputError`: bad settings.
    """

    uses_gpu = True

    def __init__(self, family: str, model_root: str | Path | None = None, *,
                 settings: GenerationSettings | None = None, model_set: ModelSet | None = None):
        self.family = family
        self.backgrounds = ClassicBackgrounds()  # main and alternate images stay procedural white
        self.model_root = str(model_root) if model_root is not None else None
        self.settings = settings if settings is not None else GenerationSettings()
        self.model_set = model_set or resolve_model_set(self.family, self.model_root, self.settings)
        self.commercial_set, self.commercial_reason = self._resolve_commercial()
        for ms in (self.model_set, self.commercial_set):
            if ms is not None:
                check_step_settings(self.scene_params(ms), ms, self.settings)
        self._preload_classes()
        from pipelines.generation.determinism import CUBLAS_WORKSPACE, configure_determinism
        from pipelines.generation.loading import resolve_device
        from pipelines.settings import cublas_workspace_config

        # before any model or CUDA matmul: cuBLAS reads its workspace setting when it starts
        device = resolve_device(self.settings.device)
        workspace = cublas_workspace_config(CUBLAS_WORKSPACE) if device.startswith("cuda") else None
        self.determinism = configure_determinism(device, cublas_workspace=workspace)
        self._check_backends()
        self._scenes: dict[str, GarmentScenePipeline] = {}
        self._load_lock = threading.Lock()
        #: one generation at a time per generator (shared models, schedulers); try-on shares it
        self.run_lock = threading.Lock()
        self._fingerprints: dict[str, str] | None = None

    @property
    def kind(self) -> str:
        return self.family

    def _check_backends(self) -> None:
        """Fail at start, not at the first generated output: offload without CUDA, a quantization or
        GGUF setting whose package is missing (`InputError` / `MissingBackendError` naming the setting)."""
        from pipelines.generation.loading import LoadContext, quantization_config

        LoadContext(self.model_root, self.settings)  # offload needs CUDA
        if self.settings.quantize:
            quantization_config(self.settings)
        if self.settings.gguf:
            import importlib.util

            from pipelines.errors import MissingBackendError

            if importlib.util.find_spec("gguf") is None:
                raise MissingBackendError("GGUF", "pip install 'gguf>=0.10', or unset VITRINE_GEN_GGUF")

    def _preload_classes(self) -> None:
        """Import every diffusers/transformers class this engine (and try-on/Kontext) may use, now, in
        one thread: their lazy imports race when SKUs load pipelines in parallel threads."""
        from pipelines.generation.loading import preload_classes

        folders = list((self.model_set.paths or {}).values())
        if self.commercial_set is not None:
            folders += list((self.commercial_set.paths or {}).values())
        names = [("diffusers", c) for (fam, _), c in GENERATOR_CLASSES.items() if fam == self.family]
        names += [("diffusers", SDXL_UNION_GENERATOR), ("diffusers", "ControlNetUnionModel")] if self.family == "sdxl" else []
        if self.family == "flux":
            names += [("diffusers", c) for c in ("FluxMultiControlNetModel", "FluxFillPipeline", "FluxKontextPipeline",
                                                 "FluxPipeline")]
        else:
            names += [("diffusers", c) for c in ("MultiControlNetModel", "StableDiffusionXLPipeline",
                                                 "StableDiffusionXLImg2ImgPipeline")]
        names += [("diffusers", p.scheduler["class"]) for p, _ in self.model_set.loras if p.scheduler]
        preload_classes(folders, tuple(names))

    def _resolve_commercial(self) -> tuple[ModelSet | None, str]:
        """The models for SKUs marked commercial: the default set when all of it allows commercial use,
        else the commercially usable models found (or ``None`` and why not)."""
        if not self.model_set.non_commercial():
            return self.model_set, "every default model allows commercial use"
        try:
            cs = resolve_model_set(self.family, self.model_root, self.settings, commercial_only=True)
        except (ModelNotFoundError, InputError) as exc:
            first = str(exc).splitlines()[0]
            return None, f"no commercially usable {self.family} model set: {first}"
        return cs, f"commercial SKUs use {cs.base.id} without the non-commercial models"

    def model_set_for(self, request: OutputRequest) -> tuple[str, ModelSet]:
        """(``default`` or ``commercial``, the model set) for a request's SKU (see `check_licence`)."""
        if request.product.spec.commercial and self.model_set.non_commercial():
            self.check_licence(request)
            return "commercial", self.commercial_set  # type: ignore[return-value]
        return "default", self.model_set

    # -- description ------------------------------------------------------------------------------------
    def fingerprints(self) -> dict[str, str]:
        """Profile name -> `snapshot_fingerprint` of its folder (computed once)."""
        if self._fingerprints is None:
            from pipelines.generation.loading import snapshot_fingerprint

            paths = dict(self.model_set.paths or {})
            if self.commercial_set is not None:
                paths.update(self.commercial_set.paths or {})
            self._fingerprints = {name: snapshot_fingerprint(path) for name, path in sorted(paths.items())}
        return self._fingerprints

    def backends(self) -> dict[str, str]:
        ms = self.model_set
        gen = generator_class(self.family, ms)
        controls = ", ".join(f"{c}: {cn.id}" for c, cn in ms.controlnet_for().items()) or "none (unconstrained)"
        return {
            "generation": f"{gen} on {ms.base.id}" + (f" + LoRA {', '.join(p.name for p, _ in ms.loras)}" if ms.loras else ""),
            "generation_controls": controls,
            "background": "generated around the kept subject (lifestyle); procedural pure white (main, alternates)",
            "on_model": f"garment types {', '.join(ON_MODEL_TYPES)} placed on a standing pose template",
            "seam_inpainting": (f"{ms.seam.id} in the seam band only" if ms.seam else f"{ms.base.id} inpainting in the seam band only")
            + "; classic on white",
        }

    def details(self) -> dict[str, Any]:
        return {
            "models": self.model_set.to_json(),
            "commercial_models": self.commercial_set.to_json() if self.commercial_set is not None else None,
            "commercial_models_reason": self.commercial_reason,
            "settings": self.settings.to_json(),
            "model_fingerprints": self.fingerprints(),
        }

    def models(self) -> list[dict[str, Any]]:
        out = []
        fps = self.fingerprints()
        paths = dict(self.model_set.paths or {})
        profiles = self.model_set.profiles()
        if self.commercial_set is not None and self.commercial_set is not self.model_set:
            paths.update(self.commercial_set.paths or {})
            profiles += [p for p in self.commercial_set.profiles() if p not in profiles]
        for p in profiles:
            path = paths.get(p.name)
            revision = p.revision
            if revision is None and path is not None and path.parent.name == "snapshots":
                revision = path.name  # a Hugging Face cache snapshot is named by its commit
            sets = [n for n, ms in (("default", self.model_set), ("commercial", self.commercial_set))
                    if ms is not None and p in ms.profiles()]
            rec = {"id": p.id, "name": p.name, "role": p.role, "revision": revision, "licence": p.licence,
                   "commercial": p.commercial, "model_sets": sets, "source": str(path) if path else None,
                   "fingerprint": fps.get(p.name)}
            marker = read_marker(path) if path is not None else None
            if marker is not None:  # found as a single-file checkpoint: the file, its header sha256, the rest
                rec["source"] = marker["path"]
                rec["single_file"] = {k: marker[k] for k in ("name", "kind", "size", "header_sha256", "configs",
                                                             "components")}
            out.append(rec)
        return out

    # -- loading ----------------------------------------------------------------------------------------
    def scene_pipeline(self, which: str = "default") -> GarmentScenePipeline:
        """The generation pipelines of the ``default`` or ``commercial`` model set, loaded on first use
        (once per engine; every model once per process, see `MODEL_CACHE`)."""
        with self._load_lock:
            if which not in self._scenes:
                ms = self.model_set if which == "default" else self.commercial_set
                if ms is None:
                    raise InputError(self.commercial_reason, key="commercial")
                self._scenes[which] = self._load(ms)
            return self._scenes[which]

    def _load(self, ms: ModelSet) -> GarmentScenePipeline:
        from pipelines.generation.loading import LoadContext, load_pipeline, load_standalone
        from pipelines.generation.scene import GarmentScenePipeline

        settings = self.settings
        ctx = LoadContext(self.model_root, settings)
        self._plan(ms, ctx)
        extra = {"vae": load_standalone(ms.vae, ctx, "vae")} if ms.vae is not None else {}
        generator = load_pipeline(ms.base, pipeline_class=generator_class(self.family, ms),
                                  controlnets=ms.controlnets, components=extra, ctx=ctx)
        if ms.seam is not None:
            seam = load_pipeline(ms.seam, base=ms.base, components=extra, ctx=ctx)
        else:
            seam = load_pipeline(ms.base, pipeline_class=GENERATOR_CLASSES[(self.family, False)], components=extra,
                                 ctx=ctx)
        refiner = load_pipeline(ms.refiner, base=ms.base, components=extra, ctx=ctx) if ms.refiner else None
        lora = self._lora(ms)
        if lora is not None and lora.scheduler:
            for pipe in ([generator] if ms.seam is not None else [generator, seam]):
                set_scheduler(pipe, lora.scheduler)
                if lora.timesteps and not _accepts_timesteps(pipe):
                    # e.g. SDXL ControlNet inpainting has no `timesteps` argument: the scheduler is pinned to
                    # the distill's timesteps instead of silently running its own (DMD2: 999/749/499/249)
                    pin_timesteps(pipe.scheduler, lora.timesteps)
        order = () if ms.control_modes() else tuple(
            next(c for c in cn.controls if c in CONTROL_TYPES) for cn in ms.controlnets)
        return GarmentScenePipeline(generator, seam, family=self.family, control_order=order, refiner=refiner)

    def _plan(self, ms: ModelSet, ctx) -> None:
        """Plan GPU memory for the whole model set before loading any of it (plus FLUX.1 Kontext for
        try-on SKUs when found), so the first model loaded already knows what must fit beside it."""
        from pipelines.generation import loading
        from pipelines.generation.memplan import manager_for, min_level_for, plan_models, tryon_extras, work_megapixels

        if not (ctx.device.startswith("cuda") or loading._PLAN_ANY_DEVICE):
            return
        ms_paths = ModelSet(**{**ms.__dict__, "paths": dict(ms.paths or {})})
        models = plan_models(ms_paths, settings=self.settings, device=ctx.device,
                             extra=tryon_extras(ms_paths, self.model_root))
        manager_for(ctx.device).ensure(models, family=self.family, min_level=min_level_for(self.settings),
                                       megapixels=work_megapixels(self.settings))

    def memory_plan(self) -> dict[str, Any] | None:
        """The device's memory plan in short (level, peak, placements, out-of-memory retries), or ``None``."""
        from pipelines.generation.loading import LoadContext

        try:
            mgr = LoadContext(self.model_root, self.settings).manager
        except InputError:
            return None
        return mgr.plan.summary() if mgr is not None and mgr.plan is not None else None

    @staticmethod
    def _lora(ms: ModelSet):
        return next((p for p, _ in ms.loras if p.steps), None)

    def scene_params(self, ms: ModelSet | None = None) -> SceneParams:
        """Steps, guidance and scales: the settings' when given, else the LoRA's, else the models'."""
        from pipelines.generation.scene import SceneParams

        ms, s = ms or self.model_set, self.settings
        lora = self._lora(ms)
        steps = s.steps or (lora.steps if lora else None) or ms.base.steps or 28
        guidance = s.guidance if s.guidance is not None else (
            lora.guidance if lora is not None and lora.guidance is not None else (ms.base.guidance or 0.0))
        if ms.seam is not None:
            seam_steps, seam_guidance = ms.seam.steps or steps, ms.seam.guidance if ms.seam.guidance is not None else guidance
            seam_strength = ms.seam.strength or 0.85
            seam_msl = ms.seam.max_sequence_length
        else:
            seam_steps, seam_guidance, seam_strength, seam_msl = steps, guidance, 0.85, ms.base.max_sequence_length
        return SceneParams(
            steps=steps, guidance=guidance, strength=1.0,
            controlnet_scale={"openpose": s.controlnet_scale[0], "canny": s.controlnet_scale[1]},
            control_modes=ms.control_modes(), max_sequence_length=ms.base.max_sequence_length,
            timesteps=lora.timesteps if lora is not None else None,
            seam_steps=s.seam_steps or seam_steps, seam_guidance=seam_guidance,
            seam_strength=s.seam_strength or seam_strength, seam_max_sequence_length=seam_msl,
            work_side=s.work_side,
        )

    # -- licences ---------------------------------------------------------------------------------------
    def check_licence(self, request: OutputRequest) -> None:
        """Refuse non-commercial models for a SKU marked ``commercial: true``.

        Raises:
            `InputError`: naming ``product.yaml`` [commercial], the models, their licences and alternatives.
        """
        product = request.product
        if not product.spec.commercial:
            return
        bad = self.model_set.non_commercial()
        if not bad or self.commercial_set is not None:
            return
        alternatives = sorted({a for p in bad for a in p.alternatives})
        raise InputError(
            f"the SKU is marked commercial but the {self.family} engine's models are not licensed for it: "
            f"{', '.join(f'{p.id} ({p.licence})' for p in bad)}, and {self.commercial_reason}. Commercially "
            f"usable alternatives: {', '.join(alternatives) or 'none known'} (e.g. --engine sdxl)",
            path=product.spec_path or product.dir, key="commercial",
        )

    # -- compose ----------------------------------------------------------------------------------------
    def background(self, kind: str, size: tuple[int, int], seed: int, alpha: np.ndarray, *,
                   contact_shadow: bool) -> np.ndarray:
        return self.backgrounds.background(kind, size, seed, alpha, contact_shadow=contact_shadow)

    def place(self, request: OutputRequest, default: Placement) -> Placement:
        """On-model outputs: the garment where the pose template wears it; otherwise ``default``."""
        if output_mode(request) != "on-model":
            return default
        return on_model_placement(request.subject.bbox, request.size, request.product.spec.garment_type,
                                  resample=default.resample)

    def _pose(self, mode: str, request: OutputRequest, placement: Placement) -> PoseResult | None:
        if mode == "on-model":
            return template_pose(request.size)
        if request.subject.kind != "person":
            return None
        pose = request.subject.pose
        if pose is None and request.controls.pose is not None:
            pose = PoseResult.from_json(request.controls.pose)
        return map_pose(pose, placement) if pose is not None and pose.found else None

    def compose(self, request: OutputRequest, placement: Placement, foreground: np.ndarray, alpha: np.ndarray,
                band: np.ndarray, compositor: Compositor) -> Composed:
        """Generate the output's background around the subject (see the module docstring); white outputs are
        procedural, their seam inpainted by ``compositor``."""
        mode = output_mode(request)
        if mode == "classic":
            return classic_compose(self.backgrounds, compositor, request, foreground, alpha, band)
        which, ms = self.model_set_for(request)
        scene = self.scene_pipeline(which)
        params = self.scene_params(ms)
        prompt, negative = scene_prompts(mode, request, self.settings)
        pose = self._pose(mode, request, placement)
        with self.run_lock:
            out = scene(foreground, alpha, band, prompt=prompt, params=params, seed=request.seed,
                        negative_prompt=negative, pose=pose, shadow=request.contact_shadow and mode == "scene")
            used = getattr(scene.generator.scheduler, "timesteps", None)
            timesteps_used = [int(t) for t in used] if used is not None and len(used) <= 200 else None
        record = {"mode": mode, "engine": self.family, "model_set": which, "base": ms.base.id,
                  "controlnets": [p.id for p in ms.controlnets], "seam_model": ms.seam.id if ms.seam else ms.base.id,
                  "loras": [[p.name, s] for p, s in ms.loras], **out.record}
        record["timesteps_used"] = timesteps_used  # what the generator's scheduler actually ran
        record["determinism"] = self.determinism
        plan = self.memory_plan()
        if plan is not None:
            record["memory_plan"] = plan
        work = {"generated.png": ("generated", out.generated, False),
                "generation-mask.png": ("generation-mask", out.generation_mask, True)}
        for name, image in out.controls.items():
            work[f"generation-control-{name}.png"] = (f"generation-control-{name}", image, False)
        return Composed(composite=out.composite, final=out.final, record=record, work=work)


def _accepts_timesteps(pipe) -> bool:
    import inspect

    return "timesteps" in inspect.signature(pipe.__call__).parameters


def pin_timesteps(scheduler, timesteps) -> None:
    """Make ``scheduler.set_timesteps`` always set exactly ``timesteps`` (for pipelines whose call takes no
    ``timesteps``); the scheduler must accept ``set_timesteps(timesteps=...)`` (LCM, Euler, DDPM...).

    Raises:
        `InputError`: the scheduler cannot take explicit timesteps.
    """
    import inspect

    original = scheduler.set_timesteps
    if "timesteps" not in inspect.signature(original).parameters:
        raise InputError(f"{type(scheduler).__name__} cannot take explicit timesteps {list(timesteps)}",
                         key="VITRINE_GEN_LORAS")
    fixed = [int(t) for t in timesteps]

    def set_timesteps(num_inference_steps=None, device=None, **kwargs):
        kwargs.pop("timesteps", None)
        return original(device=device, timesteps=list(fixed), **kwargs)

    scheduler.set_timesteps = set_timesteps
    scheduler._vitrine_pinned_timesteps = fixed


def check_step_settings(params, ms: ModelSet, settings: GenerationSettings) -> None:
    """Refuse step/strength combinations that leave an inpainting call with no denoising step, at start.

    SDXL's inpainting pipelines run ``int(steps * strength)`` steps (FLUX's round up to at least one): a
    seam of 1 step at SDXL inpainting's strength 0.99 would crash every SKU mid-batch with "the number
    of pipeline steps is 0".

    Raises:
        `InputError`: naming the setting to change (``VITRINE_GEN_SEAM_STEPS`` / ``..._SEAM_STRENGTH``).
    """
    import math

    if ms.family != "sdxl":
        return
    checks = [("seam", params.seam_steps, params.seam_strength, ms.seam.id if ms.seam else ms.base.id),
              ("scene", params.steps, params.strength, ms.base.id)]
    for what, steps, strength, model in checks:
        if int(steps * strength) >= 1:
            continue
        need = math.ceil(round(1 / strength, 9))
        if what == "seam":
            key = "VITRINE_GEN_SEAM_STEPS"
            fix = f"set VITRINE_GEN_SEAM_STEPS >= {need} or VITRINE_GEN_SEAM_STRENGTH=1"
        else:
            key, fix = "VITRINE_GEN_STEPS", f"set VITRINE_GEN_STEPS >= {need}"
        raise InputError(f"{what} inpainting with {model} would run int({steps} x strength {strength}) = "
                         f"{int(steps * strength)} denoising steps (SDXL pipelines run int(steps x strength)): {fix}",
                         key=key)


def set_scheduler(pipe, spec: dict[str, Any]) -> None:
    """Replace a pipeline's scheduler by ``spec["class"]`` built from its config plus the other keys."""
    import diffusers

    cls = getattr(diffusers, spec["class"])
    overrides = {k: v for k, v in spec.items() if k != "class"}
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **overrides)


def generative_engine(family: str, requested: str | None = None, reason: str = "requested explicitly",
                      model_root: str | Path | None = None, *, settings: GenerationSettings | None = None,
                      model_set: ModelSet | None = None, segmenter: Segmenter | None = None) -> Engine:
    """The ``flux`` or ``sdxl`` bundle: a `SceneGenerator` of ``family`` with the classic controls and seams,
    and ``segmenter`` (default: grounded-sam when its models are found under ``model_root``, else classic).

    Args:
        family (`str`): ``flux`` or ``sdxl``.
        requested (`str`, *optional*): what the user asked for (default: the family).
        reason (`str`, *optional*): why this engine was picked.
        model_root, settings, model_set: see `SceneGenerator`.
        segmenter (`Segmenter`, *optional*): the subject segmentation.

    Raises:
        `ModelNotFoundError`: no base model of the family is found. `InputError`: bad settings.
    """
    generator = SceneGenerator(family, model_root, settings=settings, model_set=model_set)
    if segmenter is None:
        segmenter = best_segmenter(generator.model_root)
    return Engine(name=family, segmenter=segmenter, controller=ClassicControls(), generator=generator,
                  compositor=ClassicSeams(), requested=requested or family, reason=reason)


def flux_engine(requested: str | None = None, reason: str = "requested explicitly",
                model_root: str | Path | None = None, **kwargs) -> Engine:
    """FLUX.1 (dev or schnell) + FLUX ControlNet (union pose/canny) + FLUX Fill for seams (see `generative_engine`)."""
    return generative_engine("flux", requested, reason, model_root, **kwargs)


def sdxl_engine(requested: str | None = None, reason: str = "requested explicitly",
                model_root: str | Path | None = None, **kwargs) -> Engine:
    """SDXL base + OpenPose and Canny ControlNets + SDXL inpainting for seams (see `generative_engine`)."""
    return generative_engine("sdxl", requested, reason, model_root, **kwargs)


def _denoiser_bytes(path: Path) -> int:
    total = 0
    for sub in ("transformer", "unet"):
        folder = path / sub
        if folder.is_dir():
            total += sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    return total


def make_probe(family: str):
    """A cheap probe for ``family``: its models are found, and a GPU is there for full-size ones."""

    def probe(model_root, settings: GenerationSettings | None = None) -> tuple[bool, str]:
        settings = settings if settings is not None else GenerationSettings()
        ms, why = probe_model_set(family, model_root, settings)
        if ms is None:
            return False, why
        path = (ms.paths or {}).get(ms.base.name)
        if path is not None and _denoiser_bytes(path) > FULL_SIZE_BYTES:
            if not settings.allow_cpu and settings.device in ("auto", "cpu"):
                import torch

                if settings.device == "cpu" or not torch.cuda.is_available():
                    return False, (f"{ms.base.id} found but no CUDA GPU (generation on a CPU takes hours per "
                                   "image); set VITRINE_GEN_ALLOW_CPU=1 to use it anyway")
        return True, why

    return probe


FLUX = EngineEntry(name="flux", build=flux_engine, probe=make_probe("flux"), priority=30)
SDXL = EngineEntry(name="sdxl", build=sdxl_engine, probe=make_probe("sdxl"), priority=20)
