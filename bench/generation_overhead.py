"""Vitrine's generation path vs the bare diffusers calls, on the same (tiny) pipelines, in one run.

For each family (flux, sdxl) the engine's pipelines are loaded once through Vitrine's loader. A batch of
garments is then generated twice per repeat, interleaved:

- **Vitrine**: `GarmentScenePipeline.__call__` (working-size inputs, control images, the generation call
  through the OOM wrapper, upscale, exact composite, seam-band inpainting, band-only paste);
- **bare**: the same two diffusers calls (generation + seam) with the very same arguments, prepared
  beforehand, nothing else.

Two figures, after a warm-up call:

- **in-run overhead**: within the Vitrine runs themselves, the time spent outside the two diffusers calls
  over the time inside them. Model time and overhead come from the same runs, so the noise of a shared
  machine (which moves model time by +-10 % from run to run) cancels out;
- **A/B ratio**: ``Vitrine / bare`` over the batch, from the fastest of the repeats of each image.

On a CPU times are process CPU time (robust to other processes) with the wall-time ratio alongside; on
a GPU synchronised wall time.
Outputs are at the working size, so both sides do the same model work; a second figure adds the
post-processing of catalog-size outputs (1600x2000), which is real work, not overhead, and which on
real models (seconds per image) is small. The script also checks that the batch loads no model (every
model was loaded exactly once, at warm-up) and that both sides produce the same pixels.

Usage:
    python bench/generation_overhead.py                       # builds the tiny models in a temp dir
    python bench/generation_overhead.py --model-root TINY --family flux --images 6 --repeats 5
    python bench/generation_overhead.py --model-root /models  # real weights (on a GPU)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

import numpy as np  # noqa: E402


def garments(n: int, size: tuple[int, int]):
    """``n`` drawn garments placed on a standing template: (fg, alpha, band, pose) at ``size``."""
    from pipelines.compositing.composite import render_layer, seam_band
    from pipelines.controls.templates import on_model_placement, template_pose
    from pipelines.samples import draw_dress, draw_tee

    out = []
    for i in range(n):
        rgb, mask = (draw_tee, draw_dress)[i % 2](256, seed=i)
        ys, xs = np.nonzero(mask >= 128)
        bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        placement = on_model_placement(bbox, size, "upper" if i % 2 == 0 else "dress")
        fg = render_layer(rgb, placement)
        alpha = render_layer(mask, placement, mode="L")
        out.append((fg, alpha, seam_band(alpha, 3, 4), template_pose(size)))
    return out


def bench_family(family: str, model_root: Path, images: int, repeats: int, steps: int | None,
                 catalog_size: tuple[int, int]) -> dict:
    from pipelines.engines.generative import flux_engine, sdxl_engine
    from pipelines.generation.loading import MODEL_CACHE
    from pipelines.generation.scene import _generator, _to_uint8
    from pipelines.generation.settings import GenerationSettings

    settings = GenerationSettings(steps=steps, seam_steps=steps)
    engine = (flux_engine if family == "flux" else sdxl_engine)(model_root=model_root, settings=settings)
    loads_before = sum(MODEL_CACHE.loads.values())
    t0 = time.perf_counter()
    scene = engine.generator.scene_pipeline()
    load_s = time.perf_counter() - t0
    params = engine.generator.scene_params()
    prompt, negative = "a fashion model wearing a shirt, studio", "blurry"

    # 1. Working size of this pipeline; the batch at that size (same model work on both sides)
    from pipelines.generation.worksize import native_side, size_multiple, work_size

    ws = work_size((4, 5), params.work_side or native_side(scene.generator), size_multiple(scene.generator))
    batch = garments(images, ws)

    # 2. Warm-up (one Vitrine call per image), and the exact bare arguments of each image
    bare_args = []
    for i, (fg, alpha, band, pose) in enumerate(batch):
        out = scene(fg, alpha, band, prompt=prompt, negative_prompt=negative, params=params, seed=i, pose=pose)
        ws_, fg_w, keep_w, canvas_w, gen_mask = scene.prepare_work(fg, alpha, params.work_side)
        controls = scene.prepare_controls(ws_, fg_w, keep_w, pose)
        gen_kw = scene.generation_kwargs(canvas_w, gen_mask, ws_, controls, prompt, negative, i, params)
        seam_kw = scene.seam_kwargs(out.composite, band, ws_, prompt, negative, i, params)
        bare_args.append((gen_kw, seam_kw, out))
    loads_after_warmup = sum(MODEL_CACHE.loads.values())

    import torch

    cuda = str(scene.generator.device).startswith("cuda")

    def clock() -> tuple[float, float]:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter(), time.process_time()

    # Time spent inside the diffusers calls of the Vitrine runs (the wrapper's own cost counts as overhead).
    import pipelines.generation.scene as scene_module

    inside = [0.0, 0.0]
    original = scene_module.call_with_oom_fallback

    def timed_call(call, kwargs, **kw):
        def inner(**k):
            t = clock()
            result = call(**k)
            e = clock()
            inside[0] += e[0] - t[0]
            inside[1] += e[1] - t[1]
            return result

        return original(inner, kwargs, **kw)

    scene_module.call_with_oom_fallback = timed_call

    def run_vitrine(i: int, size=None):
        fg, alpha, band, pose = batch[i]
        if size is not None:
            from PIL import Image

            fg = np.asarray(Image.fromarray(fg).resize(size, Image.Resampling.LANCZOS))
            alpha = np.asarray(Image.fromarray(alpha).resize(size, Image.Resampling.LANCZOS))
            from pipelines.compositing.composite import seam_band

            band = seam_band(alpha, 3, 4)
            k = pose.keypoints.copy()
            k[:, 0] *= size[0] / pose.width
            k[:, 1] *= size[1] / pose.height
            from pipelines.controls.pose import PoseResult

            pose = PoseResult(width=size[0], height=size[1], keypoints=k)
        t = clock()
        out = scene(fg, alpha, band, prompt=prompt, negative_prompt=negative, params=params, seed=i, pose=pose)
        e = clock()
        return (e[0] - t[0], e[1] - t[1]), out

    def run_bare(i: int):
        gen_kw, seam_kw, _ = bare_args[i]
        gen_kw = dict(gen_kw, generator=_generator(i))
        seam_kw = dict(seam_kw, generator=_generator(i))
        t = clock()
        generated = scene.generator(**gen_kw).images
        seam = scene.seam(**seam_kw).images
        e = clock()
        return (e[0] - t[0], e[1] - t[1]), _to_uint8(generated[0]), seam

    # 3. Timed, interleaved (ABAB, order alternating per repeat)
    v_times = [[] for _ in batch]
    b_times = [[] for _ in batch]
    v_total, v_inside = [0.0, 0.0], [0.0, 0.0]
    same = True
    for r in range(repeats):
        for i in range(len(batch)):
            order = (0, 1) if (r + i) % 2 == 0 else (1, 0)
            for which in order:
                if which == 0:
                    before = list(inside)
                    dt, out = run_vitrine(i)
                    v_times[i].append(dt)
                    for k in (0, 1):
                        v_total[k] += dt[k]
                        v_inside[k] += inside[k] - before[k]
                else:
                    dt, generated, _ = run_bare(i)
                    b_times[i].append(dt)
                    same &= bool(np.array_equal(generated, bare_args[i][2].generated))
    def total(times, k):  # the fastest repeat of each image, summed over the batch
        return sum(min(t[k] for t in per_image) for per_image in times)

    wall_v, wall_b = total(v_times, 0), total(b_times, 0)
    cpu_v, cpu_b = total(v_times, 1), total(b_times, 1)
    t_v, t_b = (wall_v, wall_b) if cuda else (cpu_v, cpu_b)
    k = 0 if cuda else 1
    in_run = v_total[k] / v_inside[k] - 1
    # 4. Catalog-size outputs: the extra post-processing at full size (upscale, composite, band paste)
    cat = [run_vitrine(i, catalog_size)[0][k] for i in range(len(batch))]
    work = [min(t[k] for t in per_image) for per_image in v_times]
    scene_module.call_with_oom_fallback = original
    loads_end = sum(MODEL_CACHE.loads.values())
    return {
        "family": family,
        "generator": type(scene.generator).__name__,
        "seam": type(scene.seam).__name__,
        "device": str(scene.generator.device),
        "work_size": list(ws),
        "steps": params.steps,
        "seam_steps": params.seam_steps,
        "images": len(batch),
        "repeats": repeats,
        "load_s": round(load_s, 3),
        "model_loads_at_warmup": loads_after_warmup - loads_before,
        "model_loads_during_batch": loads_end - loads_after_warmup,
        "models_loaded_more_than_once": MODEL_CACHE.stats()["reloaded"],
        "clock": "wall (CUDA synchronised)" if cuda else "process CPU time",
        "bare_s_per_image": round(t_b / len(batch), 4),
        "vitrine_s_per_image": round(t_v / len(batch), 4),
        "ratio": round(t_v / t_b, 4),
        "overhead_pct": round(100 * (t_v / t_b - 1), 2),
        "in_run_overhead_pct": round(100 * in_run, 3),
        "in_run_overhead_ms_per_image": round(1000 * (v_total[k] - v_inside[k]) / (repeats * len(batch)), 2),
        "wall_ratio": round(wall_v / wall_b, 4),
        "catalog_size": list(catalog_size),
        "catalog_size_extra_s_per_image": round(sum(c - w for c, w in zip(cat, work)) / len(batch), 4),
        "identical_generation": same,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-root", type=Path, default=None, help="default: build tiny models in a temp dir")
    ap.add_argument("--family", choices=["flux", "sdxl", "both"], default="both")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="default: each model's own (28 FLUX.1-dev, 30 SDXL)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING)
    root = args.model_root
    if root is None:
        from pipelines.dev_models.tiny import build_tiny_models

        root = Path(tempfile.mkdtemp(prefix="vitrine-bench-tiny-"))
        t = time.perf_counter()
        build_tiny_models(root, ["flux", "sdxl"])
        print(f"tiny models written to {root} in {time.perf_counter() - t:.1f}s")
    families = ["flux", "sdxl"] if args.family == "both" else [args.family]
    results = []
    for family in families:
        r = bench_family(family, root, args.images, args.repeats, args.steps, (1600, 2000))
        results.append(r)
        print(f"\n{family}: {r['generator']} + {r['seam']} on {r['device']}, work size {r['work_size']}, "
              f"{r['steps']}+{r['seam_steps']} steps, {r['images']} images x {r['repeats']} repeats")
        print(f"  in-run overhead     {r['in_run_overhead_pct']:9.3f} %  ({r['in_run_overhead_ms_per_image']:.2f} ms/image "
              "outside the diffusers calls; target <= 3 %)")
        print(f"  bare diffusers      {r['bare_s_per_image'] * 1000:9.1f} ms/image ({r['clock']}, fastest of the repeats)")
        print(f"  Vitrine             {r['vitrine_s_per_image'] * 1000:9.1f} ms/image")
        print(f"  Vitrine / bare      {r['ratio']:9.4f}  (A/B {r['overhead_pct']:+.2f}%; wall-time ratio {r['wall_ratio']:.4f})")
        print(f"  {r['catalog_size'][0]}x{r['catalog_size'][1]} outputs  +{r['catalog_size_extra_s_per_image'] * 1000:.1f} "
              "ms/image (upscale + exact composite + band paste at full size: output work, not overhead)")
        print(f"  model loads: {r['model_loads_at_warmup']} at warm-up, {r['model_loads_during_batch']} during the "
              f"batch; loaded more than once: {r['models_loaded_more_than_once'] or 'none'}; "
              f"same pixels as bare: {r['identical_generation']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    ok = all(r["model_loads_during_batch"] == 0 and not r["models_loaded_more_than_once"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
