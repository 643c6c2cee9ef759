"""`pipelines.models.inventory`: the rows of `vitrine models` (and its --json format)."""

from __future__ import annotations

import huggingface_hub.constants

from pipelines.models.inventory import model_inventory
from pipelines.models.known import all_models


def test_one_row_per_registered_model_with_where_it_was_found(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.delenv("VITRINE_MODEL_ROOT", raising=False)
    specs = all_models()
    assert specs, "no model registered: this test proves nothing"
    present = specs[0]
    folder = tmp_path / "models" / present.id
    folder.mkdir(parents=True)
    for name in present.required_files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("{}")

    rows = model_inventory(tmp_path / "models")

    assert [r["key"] for r in rows] == [s.key for s in specs]
    assert all(list(r) == ["id", "key", "family", "licence", "commercial", "found", "source", "description"]
               for r in rows)
    first = rows[0]
    assert first["found"] == str(folder) and first["source"] == "model-root"
    assert (first["id"], first["family"], first["licence"], first["commercial"], first["description"]) == (
        present.id, present.family, present.licence, present.commercial, present.description)
    others = [r for r in rows if r["id"] != present.id]
    assert others and all(r["found"] is None and r["source"] is None for r in others)


def test_nothing_found_without_a_root_or_a_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.delenv("VITRINE_MODEL_ROOT", raising=False)
    rows = model_inventory()
    assert rows and all(r["found"] is None for r in rows)
