"""Generation building blocks without models: profiles and licences, settings, working sizes, band
pasting, on-model placement, the model cache and the out-of-memory fallback."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pipelines.errors import InputError, MissingBackendError
from pipelines.generation.loading import CacheKey, ModelCache
from pipelines.generation.oom import GenerationOOMError, call_with_oom_fallback
from pipelines.models.profiles import get_profile, list_profiles
from pipelines.generation.scene import feather_weights, paste_band
from pipelines.generation.worksize import work_size
from pipelines.generation.settings import GenerationSettings
from pipelines.controls.templates import GARMENT_REGIONS, map_pose, on_model_placement, template_pose
from pipelines.models.known import all_models
from pipelines.models.registry import COMMERCIAL_LICENCES


# -- profiles and licences --------------------------------------------------------------------------------
def test_every_family_the_issue_names_has_a_profile():
    names = {p.name for p in list_profiles()}
    for required in ("black-forest-labs/FLUX.1-schnell", "black-forest-labs/FLUX.1-dev",
                     "black-forest-labs/FLUX.1-Fill-dev", "black-forest-labs/FLUX.1-Kontext-dev",
                     "black-forest-labs/FLUX.1-Canny-dev", "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro",
                     "stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-diffusion-xl-refiner-1.0",
                     "diffusers/stable-diffusion-xl-1.0-inpainting-0.1", "xinsir/controlnet-openpose-sdxl-1.0",
                     "xinsir/controlnet-canny-sdxl-1.0", "xinsir/controlnet-union-sdxl-1.0",
                     "alimama-creative/FLUX.1-Turbo-Alpha", "ByteDance/SDXL-Lightning", "tianweiy/DMD2",
                     "city96/FLUX.1-dev-gguf"):
        assert required in names, required


def test_licences_match_the_commercial_flag_and_non_commercial_ones_name_alternatives():
    assert get_profile("black-forest-labs/FLUX.1-schnell").commercial
    for name in ("black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-Fill-dev",
                 "black-forest-labs/FLUX.1-Kontext-dev", "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro",
                 "tianweiy/DMD2"):
        assert not get_profile(name).commercial, name
    for p in list_profiles():
        if p.licence in COMMERCIAL_LICENCES:
            assert p.commercial, p.name
        if p.commercial:
            assert p.licence in COMMERCIAL_LICENCES, p.name
    for p in list_profiles(role="base") + list_profiles(role="fill"):
        if not p.commercial:
            assert all(get_profile(a).commercial for a in p.alternatives) and p.alternatives, p.name


def test_profiles_are_in_the_one_model_registry():
    by_id = {m.id: m for m in all_models()}
    dev = by_id["black-forest-labs/FLUX.1-dev"]
    assert dev.family == "flux" and not dev.commercial and dev.required_files == ("model_index.json",)
    assert by_id["Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro"].family == "flux-controlnet"
    assert by_id["ByteDance/SDXL-Lightning"].required_files == ("sdxl_lightning_4step_lora.safetensors",)


def test_few_step_loras_carry_their_scheduler_steps_and_guidance():
    lightning = get_profile("ByteDance/SDXL-Lightning")
    assert (lightning.steps, lightning.guidance) == (4, 0.0)
    assert lightning.scheduler == {"class": "EulerDiscreteScheduler", "timestep_spacing": "trailing"}
    dmd2 = get_profile("tianweiy/DMD2")
    assert dmd2.timesteps == (999, 749, 499, 249) and dmd2.scheduler["class"] == "LCMScheduler"
    assert get_profile("ByteDance/Hyper-SD:flux-8step").lora_scale == 0.125


def test_unknown_profile_is_an_error_listing_known_ones():
    with pytest.raises(InputError, match="FLUX.1-dev") as exc:
        get_profile("nobody/nothing", key="VITRINE_GEN_BASE")
    assert exc.value.key == "VITRINE_GEN_BASE"


# -- settings -----------------------------------------------------------------------------------------------
def test_settings_from_env_parse_every_kind_of_value():
    s = GenerationSettings.from_env({
        "VITRINE_GEN_STEPS": "4", "VITRINE_GEN_GUIDANCE": "0", "VITRINE_GEN_LORAS": "ByteDance/SDXL-Lightning@0.8, x/y",
        "VITRINE_GEN_FUSE_QKV": "yes", "VITRINE_GEN_CONTROLNET_SCALE": "1.0,0.5", "VITRINE_GEN_DEVICE": "cpu",
        "PATH": "/bin",
    })
    assert (s.steps, s.guidance, s.fuse_qkv, s.device) == (4, 0.0, True, "cpu")
    assert s.loras == ("ByteDance/SDXL-Lightning@0.8", "x/y") and s.controlnet_scale == (1.0, 0.5)
    assert GenerationSettings.from_env({}) == GenerationSettings()


@pytest.mark.parametrize("env, key", [
    ({"VITRINE_GEN_STEPS": "many"}, "VITRINE_GEN_STEPS"),
    ({"VITRINE_GEN_STEPS": "0"}, "VITRINE_GEN_STEPS"),
    ({"VITRINE_GEN_OFFLOAD": "disk"}, "VITRINE_GEN_OFFLOAD"),
    ({"VITRINE_GEN_QUANTIZE": "int4"}, "VITRINE_GEN_QUANTIZE"),
    ({"VITRINE_GEN_LORAS": "a/b@nine"}, "VITRINE_GEN_LORAS"),
    ({"VITRINE_GEN_STEPZ": "4"}, "VITRINE_GEN_STEPZ"),
    ({"VITRINE_GEN_QUANTIZE": "fp8", "VITRINE_GEN_GGUF": "city96/FLUX.1-dev-gguf"}, "VITRINE_GEN_QUANTIZE"),
])
def test_bad_settings_name_the_variable(env, key):
    with pytest.raises(InputError) as exc:
        GenerationSettings.from_env(env)
    assert exc.value.key == key and key in str(exc.value)


def test_quantization_without_torchao_says_what_to_install():
    pytest.importorskip("diffusers")
    try:
        import torchao  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - torchao installed: nothing to check here
        pytest.skip("torchao is installed")
    from pipelines.generation.loading import quantization_config

    with pytest.raises(MissingBackendError, match="pip install torchao"):
        quantization_config(GenerationSettings(quantize="fp8"))


# -- working size and the seam band --------------------------------------------------------------------------
@pytest.mark.parametrize("size, side, multiple", [((1600, 2000), 1024, 16), ((2000, 2000), 1024, 32),
                                                  ((192, 240), 32, 4), ((3000, 1000), 64, 4)])
def test_work_size_keeps_aspect_area_and_multiple(size, side, multiple):
    w, h = work_size(size, side, multiple)
    assert w % multiple == 0 and h % multiple == 0
    assert abs(w / h - size[0] / size[1]) < 0.1 * size[0] / size[1] + multiple / h
    assert abs(w * h - side * side) / (side * side) < 0.15


def test_paste_band_changes_only_band_pixels_and_feathers_inside_it():
    rng = np.random.default_rng(0)
    composite = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    inpainted = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    band = np.zeros((40, 50), np.uint8)
    band[10:30, 10:40] = 255
    out = paste_band(composite, inpainted, band, feather_px=2.0)
    outside = band == 0
    assert np.array_equal(out[outside], composite[outside])
    core = np.zeros_like(band, bool)
    core[13:27, 13:37] = True  # further than the feather from the band's edge
    assert np.array_equal(out[core], inpainted[core])
    w = feather_weights(band, 2.0)
    assert w[outside].max() == 0 and 0 < w[10, 20] < 1 and w[20, 25] == 1


def test_paste_band_refuses_mismatched_shapes():
    with pytest.raises(InputError):
        paste_band(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8), np.zeros((4, 4), np.uint8))


# -- on-model placement --------------------------------------------------------------------------------------
@pytest.mark.parametrize("garment_type", sorted(GARMENT_REGIONS))
def test_on_model_placement_puts_the_garment_in_its_body_region(garment_type):
    size = (1600, 2000)
    p = on_model_placement((100, 50, 500, 650), size, garment_type)
    half, top, bottom = GARMENT_REGIONS[garment_type]
    x0, y0 = p.offset
    x1, y1 = x0 + p.resized_size[0], y0 + p.resized_size[1]
    assert 0 <= x0 and x1 <= size[0] and y1 <= size[1]
    assert y0 == round(top * size[1]) and y1 <= bottom * size[1] + 1
    assert abs((x0 + x1) / 2 - size[0] / 2) <= 1
    assert abs(p.scale[0] - p.scale[1]) < 0.01  # aspect kept
    pose = template_pose(size)
    shoulders_y = pose.keypoints[5, 1]
    if garment_type != "lower":
        assert abs(y0 - shoulders_y) < 0.03 * size[1]


def test_on_model_placement_rejects_unknown_types_and_empty_boxes():
    with pytest.raises(InputError) as exc:
        on_model_placement((0, 0, 10, 10), (100, 100), "hat")
    assert exc.value.key == "garment_type"
    with pytest.raises(InputError):
        on_model_placement((5, 5, 5, 10), (100, 100), "upper")


def test_map_pose_applies_the_placement_and_drops_keypoints_off_canvas():
    from pipelines.controls.pose import PoseResult
    from pipelines.compositing.composite import Placement

    kp = np.zeros((17, 3), np.float32)
    kp[0] = (110, 60, 0.9)
    kp[1] = (0, 0, 0.9)  # maps off the canvas
    pose = PoseResult(width=200, height=200, keypoints=kp)
    placement = Placement(canvas_size=(100, 100), crop_box=(10, 20, 210, 220), resized_size=(100, 100),
                          offset=(0, 5))
    mapped = map_pose(pose, placement)
    assert mapped.width == 100 and np.allclose(mapped.keypoints[0], (50, 25, 0.9))
    assert mapped.keypoints[1, 2] == 0


# -- model cache ----------------------------------------------------------------------------------------------
def test_model_cache_loads_each_key_once_even_from_two_threads():
    cache = ModelCache()
    key = CacheKey("org/model", None, "float32", "cpu", "transformer")
    calls = []

    def load():
        calls.append(1)
        time.sleep(0.05)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(key, load))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1
    assert cache.loads[key] == 1 and cache.hits == 3 and cache.stats()["reloaded"] == []
    other = CacheKey("org/model", None, "bfloat16", "cuda", "transformer")
    cache.get(other, object)
    assert cache.stats()["loads"] == 2


# -- out of memory --------------------------------------------------------------------------------------------
class _FakePipe:
    """Raises CUDA OOM for batches larger than ``max_batch`` (or always), else returns one image per prompt."""

    def __init__(self, max_batch: int | None):
        self.max_batch = max_batch
        self.calls: list[int] = []

    def __call__(self, prompt, generator=None, **kwargs):
        import torch

        n = len(prompt) if isinstance(prompt, list) else 1
        self.calls.append(n)
        if self.max_batch is None or n > self.max_batch:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        prompts = prompt if isinstance(prompt, list) else [prompt]

        class Out:
            images = np.stack([np.full((4, 4, 3), int(p[1:]) / 10, np.float32) for p in prompts])

        return Out()


def test_oom_retries_with_smaller_batches_keeping_the_order():
    pipe = _FakePipe(max_batch=2)
    prompts = [f"p{i}" for i in range(5)]
    images = call_with_oom_fallback(pipe, {"prompt": prompts, "generator": list(range(5))})
    assert images.shape == (5, 4, 4, 3)
    assert [float(im[0, 0, 0]) for im in images] == pytest.approx([i / 10 for i in range(5)])
    assert pipe.calls[0] == 5 and max(pipe.calls[1:]) <= 3


def test_oom_at_batch_one_tries_offload_then_fails_clearly():
    pipe = _FakePipe(max_batch=None)
    offloads = []
    with pytest.raises(GenerationOOMError, match="CPU offload") as exc:
        call_with_oom_fallback(pipe, {"prompt": ["p1", "p2"]}, enable_offload=lambda: offloads.append(1) or True,
                               what="generating the scene")
    assert "VITRINE_GEN_OFFLOAD=sequential" in str(exc.value) and "generating the scene" in str(exc.value)
    assert offloads and pipe.calls[0] == 2 and 1 in pipe.calls


def test_oom_succeeds_after_offload():
    pipe = _FakePipe(max_batch=None)

    def enable():
        pipe.max_batch = 1
        return True

    images = call_with_oom_fallback(pipe, {"prompt": "p3"}, enable_offload=enable)
    assert images.shape == (1, 4, 4, 3) and pipe.calls == [1, 1]


@pytest.mark.parametrize("size", [(1600, 2000), (2000, 2000), (1024, 1024), (512, 640), (3000, 1000), (4000, 5000)])
@pytest.mark.parametrize(("side", "multiple"), [(1024, 16), (1024, 8), (64, 16)])
def test_native_work_size_upscales_at_most_1_2(size, side, multiple):
    from pipelines.generation.worksize import MAX_UPSCALE, MAX_WORK_PIXELS, native_work_size, upscale_factor

    ws = native_work_size(size, side, multiple)
    assert ws[0] % multiple == 0 and ws[1] % multiple == 0
    if size[0] * size[1] / MAX_UPSCALE**2 <= MAX_WORK_PIXELS:
        assert upscale_factor(size, ws) <= MAX_UPSCALE + 1e-9
    else:  # beyond 2048² the upscale is larger, and recorded
        assert ws[0] * ws[1] <= MAX_WORK_PIXELS * 1.05
    if size[0] * size[1] <= side * side:  # small outputs: generated at the native area and scaled down
        assert ws[0] * ws[1] >= 0.8 * side * side
    assert abs(ws[0] / ws[1] - size[0] / size[1]) < 0.05 * size[0] / size[1] + multiple / ws[1]


def test_seam_crop_pads_the_band_and_stays_inside():
    from pipelines.generation.worksize import seam_crop

    band = np.zeros((200, 100), np.uint8)
    band[50:150, 20:60] = 255
    x0, y0, x1, y1 = seam_crop(band)
    assert (x0, y0, x1, y1) == (4, 34, 76, 166)  # 12.5% of the longer side (100 px) is below the 16 px minimum
    band2 = np.zeros((400, 400), np.uint8)
    band2[100:300, 100:200] = 255
    assert seam_crop(band2) == (75, 75, 225, 325)  # 12.5% of 200 px
    band[0:5, 95:100] = 255
    assert seam_crop(band)[2] == 100 and seam_crop(band)[1] == 0
