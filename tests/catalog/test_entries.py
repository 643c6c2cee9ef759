"""`pipelines.catalog.entries` and `pipelines.catalog.folder`: what `vitrine verify` and `vitrine run` use."""

from __future__ import annotations

import os

import pytest

from pipelines.catalog.entries import manifest_dirs, unapproved_flags
from pipelines.catalog.folder import prepare_catalog_dir


def test_manifest_dirs_lists_every_folder_with_a_manifest_sorted(tmp_path):
    for name in ("b-tee", "a-tote", "bad name", "_reports", "no-manifest"):
        (tmp_path / name).mkdir()
    for name in ("b-tee", "a-tote", "bad name"):
        (tmp_path / name / "manifest.json").write_text("{}")
    (tmp_path / "_reports" / "x.json").write_text("{}")
    (tmp_path / "stray.json").write_text("{}")
    assert manifest_dirs(tmp_path) == [tmp_path / "a-tote", tmp_path / "b-tee", tmp_path / "bad name"]
    assert manifest_dirs(str(tmp_path)) == manifest_dirs(tmp_path)


def test_manifest_dirs_of_no_folder_is_empty(tmp_path):
    assert manifest_dirs(tmp_path / "missing") == []
    (tmp_path / "file").write_text("")
    assert manifest_dirs(tmp_path / "file") == []


def test_unapproved_flags_skip_approved_outputs_and_keep_order():
    flag = {"check": "fill", "flag": "fill-out-of-range", "message": "too small"}
    halo = {"check": "halo", "flag": "halo", "message": "bright rim"}
    manifest = {"outputs": [
        {"file": "main.png", "quality": {"flags": [flag, halo]}},
        {"file": "studio.png", "quality": {"flags": [flag]}, "review": {"status": "approved"}},
        {"file": "plain.png", "quality": {"flags": []}},
        {"file": "old.png"},
        {"file": "rejected.png", "quality": {"flags": [halo]}, "review": {"status": "rejected"}},
    ]}
    assert unapproved_flags(manifest) == [("main.png", flag), ("main.png", halo), ("rejected.png", halo)]
    assert unapproved_flags({}) == []


def test_prepare_creates_a_missing_catalog_inside_an_existing_parent(tmp_path):
    assert prepare_catalog_dir(tmp_path / "cat") is None
    assert (tmp_path / "cat").is_dir() and not list((tmp_path / "cat").iterdir())  # the write check cleaned up
    assert prepare_catalog_dir(tmp_path / "cat") is None  # an existing folder is fine


def test_prepare_refuses_a_file_and_a_missing_parent(tmp_path):
    (tmp_path / "f").write_text("")
    assert prepare_catalog_dir(tmp_path / "f") == "exists and is not a folder"
    why = prepare_catalog_dir(tmp_path / "typo" / "cat")
    assert why == f"the parent folder {tmp_path / 'typo'} does not exist (create it first)"
    assert not (tmp_path / "typo").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="POSIX permissions, not as root")
def test_prepare_refuses_a_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert prepare_catalog_dir(ro).startswith("not writable: ")
        assert prepare_catalog_dir(ro / "cat").startswith("cannot create the folder: ")
    finally:
        ro.chmod(0o700)


def test_prepare_leaves_an_object_store_url_alone():
    assert prepare_catalog_dir("s3://bucket/catalog") is None
