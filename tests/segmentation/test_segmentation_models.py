"""Segmentation models: registry and licences, tiny checkpoints in the real repo layouts, the loaders
(transformers, segment_anything .pth, groundingdino-py on transformers 5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.errors import InputError
from pipelines.models import segmentation_models as sm
from pipelines.dev_models import tiny_segmentation as ts
from pipelines.models.known import all_models, get

# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


def test_every_segmentation_model_is_registered_with_its_licence():
    ids = {m.id for m in all_models()}
    for mid in ("IDEA-Research/grounding-dino-tiny", "IDEA-Research/grounding-dino-base", "facebook/sam-vit-base",
                "facebook/sam-vit-large", "facebook/sam-vit-huge", sm.SAM_ORIGINAL_REPO,
                sm.GROUNDING_DINO_ORIGINAL_REPO, sm.BERT_BASE_UNCASED):
        assert mid in ids
        spec = get(mid)
        assert spec.licence == "Apache-2.0" and spec.commercial
    assert set(sm.DETECTOR_PREFERENCE) | set(sm.MASK_PREFERENCE) <= ids


def test_vitrine_models_lists_where_each_was_found(tiny_root, capsys):
    from flows.cli import main

    assert main(["models", "--json", "--model-root", str(tiny_root)]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["facebook/sam-vit-huge"]["source"] == "model-root"
    assert rows["facebook/sam-vit-huge"]["licence"] == "Apache-2.0"
    assert Path(rows["IDEA-Research/grounding-dino-tiny"]["found"]) == tiny_root / "IDEA-Research/grounding-dino-tiny"
    assert rows["facebook/sam-vit-large"]["found"] is None


# --------------------------------------------------------------------------------------------------
# Tiny checkpoints in the real layouts
# --------------------------------------------------------------------------------------------------


def test_tiny_models_use_the_published_repo_layouts(tiny_root):
    gd = tiny_root / "IDEA-Research/grounding-dino-tiny"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json",
                 "tokenizer_config.json", "vocab.txt"):
        assert (gd / name).is_file(), name
    assert not (gd / "processor_config.json").exists()
    for mid in ts.TINY_SAM_IDS + ts.TINY_SAM_HQ_IDS + ts.TINY_SAM2_IDS:
        assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {p.name for p in
                                                                                 (tiny_root / mid).iterdir()}
    assert (tiny_root / sm.SAM_ORIGINAL_REPO / ts.TINY_SAM_ORIGINAL_FILE).is_file()


def test_tiny_bert_vocab_puts_the_ids_grounding_dino_hard_codes_in_place(tiny_root):
    vocab = (tiny_root / "IDEA-Research/grounding-dino-tiny/vocab.txt").read_text().splitlines()
    assert (vocab[101], vocab[102], vocab[1012], vocab[1029]) == ("[CLS]", "[SEP]", ".", "?")
    tok = ts.make_bert_tokenizer()
    assert tok("a shirt . a hand .")["input_ids"] == [101, vocab.index("a"), vocab.index("shirt"), 1012,
                                                      vocab.index("a"), vocab.index("hand"), 1012, 102]


def test_dev_tiny_models_command_writes_a_family(tmp_path, capsys):
    from flows.cli import main

    assert main(["dev", "tiny-models", str(tmp_path), "--family", "sam"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"sam\t{tmp_path / mid}" for mid in ts.TINY_SAM_IDS]


def test_snapshot_revision_comes_from_hf_download_metadata(tiny_root, tmp_path):
    import shutil

    from pipelines.segmentation.grounded_sam import loading

    root = tmp_path / "models"
    shutil.copytree(tiny_root / "facebook/sam-vit-base", root / "facebook/sam-vit-base")
    meta = root / "facebook/sam-vit-base/.cache/huggingface/download/config.json.metadata"
    meta.parent.mkdir(parents=True)
    meta.write_text("0123456789abcdef0123456789abcdef01234567\netag\n1.0\n")
    rec, _ = loading._find_mask_model("facebook/sam-vit-base", root)
    assert rec.revision == "0123456789abcdef0123456789abcdef01234567"
    assert rec.to_json()["revision"] == rec.revision and "path" not in rec.to_json()


def test_tiny_builders_are_deterministic(tmp_path):
    a, b = ts.write_tiny_sam(tmp_path / "a"), ts.write_tiny_sam(tmp_path / "b")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def test_tiny_grounding_dino_round_trips_through_our_loader(tiny_root):
    from transformers import GroundingDinoForObjectDetection

    from pipelines.segmentation.grounded_sam.backends import TransformersGroundingDino

    torch.manual_seed(ts.SEED)
    reference = GroundingDinoForObjectDetection(ts.tiny_grounding_dino_config()).eval()
    loaded = TransformersGroundingDino.from_pretrained(tiny_root / "IDEA-Research/grounding-dino-tiny")
    image = np.random.default_rng(1).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    raw = loaded.detect(image, ["shirt", "hand"])
    assert raw.token_probs.shape == (10, 256) and raw.boxes_cxcywh.shape == (10, 4)
    assert raw.spans == [[1], [3]] and raw.phrases == ["shirt", "hand"]
    inputs = loaded.processor(images=image, text="shirt . hand .", return_tensors="pt")
    with torch.no_grad():
        ref = torch.sigmoid(reference(**inputs).logits[0]).numpy()
    np.testing.assert_allclose(np.nan_to_num(ref), raw.token_probs, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# segment_anything .pth
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["vit_b", "vit_l", "vit_h"])
def test_released_sam_shapes_are_recognised(variant):
    from segment_anything import sam_model_registry

    from pipelines.segmentation.grounded_sam.original import SAM_VARIANTS, infer_sam_architecture

    with torch.device("meta"):  # the real architecture, no memory
        state = sam_model_registry[variant]().state_dict()
    arch = infer_sam_architecture(state)
    assert arch["variant"] == variant
    assert {k: arch[k] for k in SAM_VARIANTS[variant]} == SAM_VARIANTS[variant]
    assert (arch["img_size"], arch["patch_size"], arch["window_size"], arch["out_chans"]) == (1024, 16, 14, 256)


def test_tiny_sam_pth_loads_strictly_with_the_inferred_architecture(tiny_root):
    from pipelines.segmentation.grounded_sam.original import (
        infer_sam_architecture,
        load_original_sam,
        load_torch_checkpoint,
    )

    pth = tiny_root / sm.SAM_ORIGINAL_REPO / ts.TINY_SAM_ORIGINAL_FILE
    assert infer_sam_architecture(load_torch_checkpoint(pth)) == ts.TINY_ORIGINAL_SAM_ARCH
    model, _ = load_original_sam(pth)
    reference = ts.tiny_original_sam()
    for (k, v), (k2, v2) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_checkpoints_are_read_without_unpickling_objects(tmp_path):
    from pipelines.segmentation.grounded_sam.original import load_original_sam, load_torch_checkpoint

    bad = tmp_path / "evil.pth"
    torch.save({"model": Path("/etc")}, bad)  # an arbitrary object: refused by weights_only=True
    with pytest.raises(InputError, match="weights_only=True"):
        load_torch_checkpoint(bad)
    odd = tmp_path / "odd.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1, 4, 4, 8)}, odd)
    with pytest.raises(InputError, match="not a segment_anything Sam"):
        load_original_sam(odd)


# --------------------------------------------------------------------------------------------------
# groundingdino-py on transformers 5
# --------------------------------------------------------------------------------------------------


def test_transformers_5_needs_the_bert_compatibility_layer():
    from pipelines.segmentation.grounded_sam.original import needs_bert_compat

    assert needs_bert_compat()  # if this fails, transformers restored the method: the layer turns itself off


def test_compat_bert_warper_matches_bert_with_padding_and_block_masks():
    from transformers import BertConfig, BertModel

    from pipelines.segmentation.grounded_sam.original import _compat_warper_class

    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=16)).eval()
    warper = _compat_warper_class()(bert)
    ids = torch.tensor([[1, 5, 6, 7, 2, 0]])
    pad = torch.tensor([[1, 1, 1, 1, 1, 0]])
    with torch.no_grad():
        expected = bert(input_ids=ids, attention_mask=pad).last_hidden_state
        got2d = warper(input_ids=ids, attention_mask=pad)["last_hidden_state"]
        got3d = warper(input_ids=ids, attention_mask=pad[:, None, :] * pad[:, :, None])["last_hidden_state"]
        # GroundingDINO's block mask: tokens 1-2 and 3-4 see only their own sub-sentence.
        block = torch.eye(6)[None].clone()
        block[0, 1:3, 1:3] = block[0, 3:5, 3:5] = 1
        alone = bert(input_ids=ids[:, 1:3]).last_hidden_state
        got_block = warper(input_ids=ids[:, 1:3], attention_mask=block[:, 1:3, 1:3])["last_hidden_state"]
    np.testing.assert_allclose(got2d[0, :5], expected[0, :5], atol=1e-5)
    np.testing.assert_allclose(got3d[0, :5], expected[0, :5], atol=1e-5)
    np.testing.assert_allclose(got_block, alone, atol=1e-5)


def test_bert_compat_swaps_the_warper_only_inside():
    import warnings

    from pipelines.segmentation.grounded_sam.original import bert_compat

    with warnings.catch_warnings():  # groundingdino imports timm's deprecated paths
        warnings.simplefilter("ignore", FutureWarning)
        import groundingdino.models.GroundingDINO.groundingdino as gd

    original = gd.BertModelWarper
    with bert_compat():
        assert gd.BertModelWarper is not original
    assert gd.BertModelWarper is original


def test_original_configs_are_read_not_executed(tmp_path):
    from pipelines.segmentation.grounded_sam.original import read_original_config

    good = tmp_path / "GroundingDINO_SwinT_OGC.cfg.py"
    good.write_text(ts.original_grounding_dino_config_text(enc_layers=1))
    cfg = read_original_config(good)
    assert cfg["enc_layers"] == 1 and cfg["backbone"] == "swin_T_224_1k" and cfg["max_text_len"] == 256
    bad = tmp_path / "bad.cfg.py"
    bad.write_text("import os\nmodelname = 'groundingdino'\n")
    with pytest.raises(InputError, match="only 'name = value'"):
        read_original_config(bad)
