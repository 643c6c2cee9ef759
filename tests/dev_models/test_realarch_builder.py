"""`build_real_arch_models` records the families it finished, so that a folder written once by
``vitrine dev real-arch-models DIR`` is reused by the real-architecture tier (``VITRINE_REALARCH_MODELS=DIR``)."""

from __future__ import annotations

import pytest

from pipelines.dev_models import realarch


def _writer(repo: str, fail: bool = False):
    def build(dest):
        (dest / repo).mkdir(parents=True)
        (dest / repo / "model_index.json").write_text("{}")
        if fail:
            raise RuntimeError("disk full")
        return [repo]
    return build


def test_finished_families_are_recorded_and_an_interrupted_one_is_not(tmp_path, monkeypatch):
    monkeypatch.setattr(realarch, "BUILDERS", {"flux": _writer("org/flux"), "sdxl": _writer("org/sdxl", fail=True)})
    assert realarch.built_families(tmp_path) == {}
    with pytest.raises(RuntimeError, match="disk full"):
        realarch.build_real_arch_models(tmp_path)
    assert realarch.built_families(tmp_path) == {"flux": ["org/flux"]}  # sdxl died half-way: not listed
    monkeypatch.setattr(realarch, "BUILDERS", {"flux": _writer("org/flux2"), "sdxl": _writer("org/sdxl2")})
    realarch.build_real_arch_models(tmp_path, ["sdxl"])
    assert realarch.built_families(tmp_path) == {"flux": ["org/flux"], "sdxl": ["org/sdxl2"]}
    (tmp_path / realarch.BUILT_MARKER).write_text("not json")
    assert realarch.built_families(tmp_path) == {}


def test_the_cli_folder_is_what_the_tier_reads(tmp_path, monkeypatch):
    from flows.cli.app import main

    monkeypatch.setattr(realarch, "BUILDERS", {"flux": _writer("org/flux"), "sdxl": _writer("org/sdxl"),
                                               "segmentation": _writer("org/seg")})
    assert main(["dev", "real-arch-models", str(tmp_path), "--family", "segmentation"]) == 0
    assert set(realarch.built_families(tmp_path)) == {"segmentation"}
