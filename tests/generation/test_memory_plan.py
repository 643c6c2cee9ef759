"""The GPU memory planner: weight sizes from safetensors/GGUF headers, plans for 16/24/48/80 GB GPUs with
the real FLUX.1/SDXL tensor shapes, `vitrine models --plan`, and the offload manager's hooks."""

from __future__ import annotations

import json
import struct

import pytest

from tests.helpers.memory_plan import write_flux_root, write_sdxl_root
from pipelines.errors import InputError
from pipelines.generation import memplan
from pipelines.generation.memplan import (
    GB,
    OffloadManager,
    gguf_size,
    make_plan,
    more_frugal,
    plan_for_engine,
    read_safetensors_header,
    safetensors_size,
    weight_files,
)
from pipelines.generation.settings import GenerationSettings

pytestmark = pytest.mark.filterwarnings("ignore:.*FluxPosEmbed:FutureWarning")

FLUX_DEV = "black-forest-labs/FLUX.1-dev"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
#: Plans at 1024² working size (VITRINE_GEN_WORK_SIDE=1024); the native-resolution default is tested apart.
AT_1MP = GenerationSettings(work_side=1024)


@pytest.fixture(scope="module")
def real_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-shapes")
    write_flux_root(root)
    write_sdxl_root(root)
    return root


# ------------------------------------------------------------------------------------------ headers
def test_safetensors_header_matches_what_safetensors_wrote(tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    tensors = {"a": torch.zeros(3, 5, dtype=torch.bfloat16), "b": torch.ones(7, dtype=torch.float32),
               "c": torch.arange(4, dtype=torch.int64), "d": torch.zeros(2, 2, 2, dtype=torch.float16)}
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    header = read_safetensors_header(path)
    with safe_open(str(path), "pt") as f:
        assert sorted(header) == sorted(f.keys())
        for name in f.keys():
            assert header[name][1] == tuple(f.get_slice(name).get_shape())
    assert header["a"][0] == "BF16" and header["c"][0] == "I64"
    size = safetensors_size([path])
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert size.stored_bytes == path.stat().st_size - 8 - n  # every data byte accounted for
    assert size.params == 15 + 7 + 8 and size.other_bytes == 32
    assert size.at(2) == 30 * 2 + 32


@pytest.mark.parametrize("content", [b"", b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}", b"\xff" * 8])
def test_a_broken_safetensors_file_is_named(tmp_path, content):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(InputError, match="broken.safetensors"):
        read_safetensors_header(path)


def test_gguf_size_reads_the_tensor_table(tmp_path):
    from pipelines.dev_models.tiny_generation import flux_transformer, write_gguf

    path = tmp_path / "t.gguf"
    model = flux_transformer(guidance_embeds=True)
    write_gguf(model, path)
    size = gguf_size(path)
    assert size.params == sum(p.numel() for p in model.state_dict().values())
    # Q8_0 blocks (34 bytes per 32 weights) and F32 tensors: less than float32, more than one byte per weight
    assert size.params < size.stored_bytes < 4 * size.params
    assert size.stored_bytes < path.stat().st_size


def test_weight_files_count_each_tensor_once(tmp_path):
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in weight_files(tmp_path)] == ["diffusion_pytorch_model.safetensors"]
    assert [p.name for p in weight_files(tmp_path, "fp16")] == ["diffusion_pytorch_model.fp16.safetensors"]
    (tmp_path / "diffusion_pytorch_model.safetensors").unlink()  # an fp16-only download
    assert [p.name for p in weight_files(tmp_path)] == ["diffusion_pytorch_model.fp16.safetensors"]


# ------------------------------------------------------------------------------------------ plans
def _by_id(plan):
    return {m.id: m for m in plan.models}


def test_real_flux_sizes_from_the_headers(real_root):
    plan = plan_for_engine("flux", real_root, gpu_memory_gb=80, settings=GenerationSettings())
    m = _by_id(plan)
    # the published bf16 files: transformer 23.8 GB (11.9 B parameters), T5-XXL encoder 9.52 GB, union CN 6.6 GB
    assert m[f"{FLUX_DEV}/transformer"].bytes == pytest.approx(23.8 * GB, rel=0.005)
    assert m[f"{FLUX_DEV}/text_encoder_2"].bytes == pytest.approx(9.52 * GB, rel=0.005)
    assert m["Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro"].bytes == pytest.approx(6.6 * GB, rel=0.03)
    # T5, CLIP and VAE are counted once for the three FLUX pipelines
    assert set(m[f"{FLUX_DEV}/text_encoder_2"].shared_by) == {"base", "fill", "kontext"}
    assert "black-forest-labs/FLUX.1-Fill-dev/text_encoder_2" not in m
    assert {"black-forest-labs/FLUX.1-Fill-dev/transformer", "black-forest-labs/FLUX.1-Kontext-dev/transformer"} <= set(m)


@pytest.mark.parametrize(("gb", "level"), [(80, "offload-secondary"), (48, "offload-all"), (24, "sequential"),
                                           (16, "sequential")])
def test_flux_plans_for_common_gpus(real_root, gb, level):
    plan = plan_for_engine("flux", real_root, gpu_memory_gb=gb, settings=AT_1MP)
    assert plan.level == level
    assert plan.fits and plan.peak_gb <= gb
    total = sum(m.bytes for m in plan.models) / GB
    assert total > 80  # dev + Fill + Kontext + T5 + union ControlNet: why even 80 GB cannot keep everything
    m = _by_id(plan)
    if level == "offload-secondary":
        assert m[f"{FLUX_DEV}/transformer"].placement == "resident"
        assert m["black-forest-labs/FLUX.1-Kontext-dev/transformer"].placement == "model-offload"
    # the plan one level less frugal would not fit
    i = memplan.LEVELS.index(level)
    if i > 0:
        looser = memplan.placements_for(plan.models, memplan.LEVELS[i - 1])
        assert memplan.peak_bytes(looser, plan.activations_gb * GB) > gb * GB


@pytest.mark.parametrize(("gb", "level"), [(80, "resident"), (48, "resident"), (24, "resident"), (16, "offload-all")])
def test_sdxl_plans_for_common_gpus(real_root, gb, level):
    plan = plan_for_engine("sdxl", real_root, gpu_memory_gb=gb, settings=AT_1MP)
    assert plan.level == level and plan.fits
    m = _by_id(plan)
    # fp16 compute: the fp16 variants' size, not the fp32 files' (2.57 B parameters -> 5.14 GB)
    assert m[f"{SDXL}/unet"].bytes == pytest.approx(5.14 * GB, rel=0.01)
    assert m["xinsir/controlnet-openpose-sdxl-1.0"].bytes == pytest.approx(2.5 * GB, rel=0.02)


def test_the_offload_setting_is_a_floor_and_quantization_is_sized(real_root):
    plan = plan_for_engine("sdxl", real_root, gpu_memory_gb=80, settings=GenerationSettings(offload="model"))
    assert plan.level == "offload-all"
    q = plan_for_engine("flux", real_root, gpu_memory_gb=24, settings=AT_1MP.replace(quantize="fp8"))
    plain = plan_for_engine("flux", real_root, gpu_memory_gb=24, settings=AT_1MP)
    t = f"{FLUX_DEV}/transformer"
    assert _by_id(q)[t].quantized == "fp8" and _by_id(q)[t].bytes == pytest.approx(_by_id(plain)[t].bytes / 2, rel=1e-6)
    assert q.level == "offload-all"  # fits model offload once quantized; the plain plan must stream layers
    assert any("VITRINE_GEN_QUANTIZE=fp8" in n for n in plain.notes)


def test_native_resolution_plans_count_its_activations(real_root):
    """The default working size of a 1600x2000 output (1344x1680, 2.26 MP) needs more activation memory:
    FLUX.1-dev with Fill, Kontext and a union ControlNet does not fit 16 GB even layer by layer."""
    native = plan_for_engine("flux", real_root, gpu_memory_gb=16, settings=GenerationSettings())
    at_1mp = plan_for_engine("flux", real_root, gpu_memory_gb=16, settings=AT_1MP)
    assert native.activations_gb == pytest.approx(3.0 * 1344 * 1680 / 1e6 + 1.0, abs=0.01)
    assert native.level == "sequential" and not native.fits and at_1mp.fits
    assert any("does not fit" in n and "VITRINE_GEN_WORK_SIDE" in n for n in native.notes)
    assert plan_for_engine("flux", real_root, gpu_memory_gb=24, settings=GenerationSettings()).fits


def test_more_frugal_goes_one_level_and_stops(real_root):
    plan = plan_for_engine("sdxl", real_root, gpu_memory_gb=80, settings=GenerationSettings())
    levels = [plan.level]
    while (plan := more_frugal(plan)) is not None:
        levels.append(plan.level)
    assert levels == list(memplan.LEVELS)


def test_a_plan_without_a_budget_is_a_cpu_plan():
    m = memplan.PlanModel(id="x/y", role="denoiser", pipeline="base", bytes=10, group="g")
    plan = make_plan([m], family="flux", budget_bytes=None, total_bytes=None)
    assert plan.device == "cpu" and plan.level == "cpu" and "no GPU" in plan.notes[0]


def test_cli_models_plan(real_root, capsys):
    from flows.cli import main

    assert main(["models", "--plan", "--engine", "flux", "--gpu-memory", "48", "--model-root", str(real_root),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["gpu_memory_gb"] == 48 and out["level"] == "offload-all" and out["peak_gb"] <= 48
    assert {"id", "bytes", "placement"} <= set(out["models"][0])
    assert main(["models", "--plan", "--engine", "sdxl", "--model-root", str(real_root)]) == 0
    text = capsys.readouterr().out
    import torch

    if not torch.cuda.is_available():
        assert "no GPU found" in text and "planning for the CPU" in text


def test_cli_models_plan_without_models_names_the_root(tmp_path, capsys):
    from flows.cli import main

    assert main(["models", "--plan", "--engine", "flux", "--model-root", str(tmp_path)]) != 0
    assert "FLUX.1" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- the offload manager
def test_offload_manager_moves_one_group_at_a_time():
    import torch

    mgr = OffloadManager("cpu")
    models = [memplan.PlanModel(id=i, role=r, pipeline="base", bytes=1, group=g)
              for i, r, g in (("t", "text", "text"), ("d", "denoiser", "den"), ("c", "controlnet", "den"))]
    mgr.plan = make_plan(models, family="sdxl", budget_bytes=1e15, total_bytes=1e15)
    mgr.plan = memplan.MemoryPlan(**{**mgr.plan.__dict__, "models": memplan.placements_for(models, "offload-all"),
                                     "level": "offload-all"})
    mods = {k: torch.nn.Linear(2, 2) for k in "tdc"}
    for k, mod in mods.items():
        mgr.attach(k, mod)
    mods["d"](torch.zeros(1, 2))
    assert mgr._active == "den" and mgr.moves == 1
    mods["c"](torch.zeros(1, 2))  # same group: nothing moves
    assert mgr.moves == 1
    mods["t"](torch.zeros(1, 2))
    assert mgr._active == "text" and mgr.moves == 2
    assert mods["t"]._hf_hook.execution_device == "cpu"


# ------------------------------------------------------------------------- the plan in the engines (tiny models)
@pytest.fixture
def planned(monkeypatch):
    """Plan (and attach hooks) on the CPU as on CUDA, with a fake GPU whose free memory the test sets."""
    from pipelines.generation import loading
    from pipelines.generation.loading import MODEL_CACHE

    budget = {"bytes": 1e12}
    MODEL_CACHE.clear()
    monkeypatch.setattr(loading, "_PLAN_ANY_DEVICE", True)
    monkeypatch.setattr(memplan, "gpu_memory", lambda device: (budget["bytes"], budget["bytes"]))
    yield budget
    MODEL_CACHE.clear()


def _scene_inputs():
    import numpy as np

    from pipelines.compositing.composite import seam_band

    h, w = 80, 64
    fg = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    alpha[20:60, 16:48] = 255
    fg[alpha > 0] = 200
    return fg, alpha, seam_band(alpha, 3, 4)


def _params(engine):
    import dataclasses

    return dataclasses.replace(engine.generator.scene_params(), steps=1, seam_steps=1)


def _flux_engine():
    from tests.helpers.generation import fast_settings, tiny_model_root
    from pipelines.engines.generative import flux_engine

    return flux_engine(model_root=tiny_model_root(), settings=fast_settings())


def test_engine_loads_within_the_plan_and_records_it(planned):
    engine = _flux_engine()
    scene = engine.generator.scene_pipeline()
    mgr = memplan.manager_for("cpu")
    assert mgr.plan is not None and mgr.plan.level == "resident"
    ids = {m.id for m in mgr.plan.models}
    assert "black-forest-labs/FLUX.1-Kontext-dev/transformer" in ids  # planned for try-on before it loads
    # every loaded model carries the plan's hook (diffusers finds the execution device from it)
    for pipe in (scene.generator, scene.seam):
        for name, comp in pipe.components.items():
            if hasattr(comp, "parameters") and name != "controlnet":
                assert comp._hf_hook.execution_device == "cpu", name
    assert engine.generator.memory_plan()["level"] == "resident"


def test_out_of_memory_at_load_replans_one_level_and_retries_once(planned, monkeypatch):
    import torch

    real_attach = memplan.OffloadManager.attach
    failed = []

    def attach(self, model_id, module, group=None):
        if model_id.endswith("FLUX.1-Fill-dev/transformer") and self.placement(model_id) == "resident" and not failed:
            failed.append(model_id)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 23.80 GiB")
        return real_attach(self, model_id, module, group)

    monkeypatch.setattr(memplan.OffloadManager, "attach", attach)
    engine = _flux_engine()
    engine.generator.scene_pipeline()
    mgr = memplan.manager_for("cpu")
    assert failed and mgr.plan.level == "offload-secondary"
    assert mgr.plan.retries[0]["at"] == "load" and mgr.plan.retries[0]["from"] == "resident"
    assert mgr.placement("black-forest-labs/FLUX.1-Fill-dev/transformer") == "model-offload"


def test_out_of_memory_at_run_replans_every_pipeline_and_is_recorded(planned, monkeypatch):
    import torch

    engine = _flux_engine()
    scene = engine.generator.scene_pipeline()
    mgr = memplan.manager_for("cpu")
    gen_cls = type(scene.generator)
    real_call = gen_cls.__call__
    calls = []

    import functools

    @functools.wraps(real_call)
    def call(self, *a, **kw):
        calls.append(mgr.plan.level)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real_call(self, *a, **kw)

    monkeypatch.setattr(gen_cls, "__call__", call)
    fg, alpha, band = _scene_inputs()
    out = scene(fg, alpha, band, prompt="a shirt", params=_params(engine), seed=1)
    assert calls == ["resident", "offload-secondary"]
    assert out.final.shape == fg.shape
    # the Fill pipeline's transformer (not the one that ran out) was moved off the GPU too
    assert mgr.placement("black-forest-labs/FLUX.1-Fill-dev/transformer") == "model-offload"
    assert engine.generator.memory_plan()["retries"][0]["at"] == "run"


def test_a_budget_that_fits_nothing_resident_offloads_and_still_generates(planned):
    planned["bytes"] = 1.0  # a byte: even layer by layer does not "fit"; the most frugal plan is used
    engine = _flux_engine()
    scene = engine.generator.scene_pipeline()
    mgr = memplan.manager_for("cpu")
    assert mgr.plan.level == "sequential" and not mgr.plan.fits
    fg, alpha, band = _scene_inputs()
    out = scene(fg, alpha, band, prompt="a shirt", params=_params(engine), seed=1)
    assert out.final.shape == fg.shape
