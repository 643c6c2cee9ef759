"""Pose quality: PCK of the classic engine's keypoints against annotated keypoints.

Usage::

    python bench/pose_quality.py ANNOTATIONS IMAGES_DIR [ANNOTATIONS IMAGES_DIR ...] \\
        [--thresholds 0.1 0.2] [--multi] [--openpose-scale 1.0] [--out results.json]

ANNOTATIONS is one of:

- a COCO-format keypoint JSON (``categories[0].keypoints`` names the joints; ``bbox`` is [x, y, w, h]);
- an MPII-style JSON list as mmpose ships it (``joints``, ``joints_vis``, ``image``, ``scale``);
- a folder of OpenPose JSON files (BODY-18 ``{"keypoints": [[x, y, score, id], ...]}`` or BODY-25
  ``{"people": [{"pose_keypoints_2d": [...]}]}``), matched to an image by the same stem, the stem plus
  ``_keypoints``, or the same prefix before the first ``_``; ``--openpose-scale`` multiplies their
  coordinates (e.g. 2 for Dress Code, whose keypoints are given at 384x512).

Images are found by file name anywhere under IMAGES_DIR (loaded with PIL, EXIF orientation applied, RGB).
Only joints that both the annotation and COCO-17 name are scored (e.g. CrowdPose and AIC: the 12 limb
joints; MPII "head top", "neck", "pelvis" are ignored). A joint is correct when the prediction lies
within ``threshold * size`` of the annotation, ``size`` being the longer side of the annotated person's
box (COCO ``bbox``; MPII ``scale * 200``; OpenPose: the extent of its keypoints).

Default (single-person, what ``get_pose_estimator()`` returns): the one pose is scored against the
annotated person it fits best; an image where no person is found counts its largest annotated person
as all missed. ``--multi``: the people found by ``PersonSegmenter`` (pose search with painting-out) are
matched greedily to annotated people, and every annotated person with at least 5 labelled joints is
scored (unmatched ones as all missed).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

COCO17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
BODY12 = tuple(range(5, 17))
MPII16 = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
    "left_wrist",
)  # fmt: skip
OPENPOSE18 = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
OPENPOSE25 = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
    "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe",
    "left_heel", "right_big_toe", "right_small_toe", "right_heel",
)  # fmt: skip
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass
class Person:
    """One annotated person: COCO-17 keypoints (17, 2) pixels, ``labelled`` (17,) bool, box ``size`` px."""

    keypoints: np.ndarray
    labelled: np.ndarray
    size: float


def _name(raw: str) -> str:
    return raw.strip().lower().replace("-", "_").replace(" ", "_")


def _to_coco(names: list[str] | tuple[str, ...], points: np.ndarray, labelled: np.ndarray) -> tuple:
    kp = np.zeros((17, 2), np.float32)
    lab = np.zeros(17, bool)
    for i, raw in enumerate(names):
        name = _name(raw)
        if name in COCO17 and labelled[i]:
            kp[COCO17.index(name)] = points[i]
            lab[COCO17.index(name)] = True
    return kp, lab


def load_coco(path: Path) -> dict[str, list[Person]]:
    data = json.loads(path.read_text())
    names = data["categories"][0]["keypoints"]
    files = {im["id"]: Path(im["file_name"]).name for im in data["images"]}
    out: dict[str, list[Person]] = {name: [] for name in files.values()}
    for ann in data["annotations"]:
        raw = np.asarray(ann["keypoints"], np.float32).reshape(-1, 3)
        kp, lab = _to_coco(names, raw[:, :2], raw[:, 2] > 0)
        if lab.sum() == 0:
            continue
        size = float(max(ann["bbox"][2], ann["bbox"][3]))
        out[files[ann["image_id"]]].append(Person(kp, lab, size))
    return out


def load_mpii(path: Path) -> dict[str, list[Person]]:
    out: dict[str, list[Person]] = {}
    for ann in json.loads(path.read_text()):
        kp, lab = _to_coco(MPII16, np.asarray(ann["joints"], np.float32), np.asarray(ann["joints_vis"]) > 0)
        out.setdefault(Path(ann["image"]).name, []).append(Person(kp, lab, float(ann["scale"]) * 200.0))
    return out


def load_openpose_dir(folder: Path, image_names: list[str], scale: float) -> dict[str, list[Person]]:
    files = sorted(folder.glob("*.json"))
    out: dict[str, list[Person]] = {}
    for image_name in image_names:
        stem = Path(image_name).stem
        match = [f for f in files if f.stem in (stem, stem + "_keypoints")]
        if not match:
            prefix = stem.split("_")[0]
            match = [f for f in files if f.stem.split("_")[0] == prefix]
        if len(match) != 1:
            continue
        data = json.loads(match[0].read_text())
        people = []
        if "people" in data:
            for person in data["people"]:
                people.append(np.asarray(person["pose_keypoints_2d"], np.float32).reshape(-1, 3))
        else:
            people.append(np.asarray(data["keypoints"], np.float32)[:, :3])
        persons = []
        for raw in people:
            names = OPENPOSE25 if len(raw) == 25 else OPENPOSE18
            valid = (raw[:, 2] > 0.1) & ~((raw[:, 0] == 0) & (raw[:, 1] == 0))
            kp, lab = _to_coco(names, raw[:, :2] * scale, valid)
            if lab.sum() < 2:
                continue
            size = float(max(np.ptp(kp[lab, 0]), np.ptp(kp[lab, 1])))
            persons.append(Person(kp, lab, size))
        out[image_name] = persons
    return out


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(ImageOps.exif_transpose(im).convert("RGB"))


def correct(pred: np.ndarray, person: Person, threshold: float) -> np.ndarray:
    """(17,) bool: labelled joints predicted within ``threshold * size``."""
    dist = np.linalg.norm(pred[:, :2] - person.keypoints, axis=1)
    return person.labelled & (dist <= threshold * person.size)


def fit(pred: np.ndarray, person: Person) -> tuple[int, float]:
    """How well a prediction fits a person: (joints correct at 0.1, minus mean normalised error)."""
    dist = np.linalg.norm(pred[:, :2] - person.keypoints, axis=1) / max(person.size, 1.0)
    return int(correct(pred, person, 0.1).sum()), -float(dist[person.labelled].mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pairs", nargs="+", metavar="ANNOTATIONS IMAGES_DIR")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument(
        "--multi", action="store_true", help="score every annotated person (multi-person search)"
    )
    parser.add_argument("--openpose-scale", type=float, default=1.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if len(args.pairs) % 2:
        parser.error("give ANNOTATIONS IMAGES_DIR pairs")

    from pipelines.segmentation.person import get_person_segmenter
    from pipelines.controls.pose import get_pose_estimator

    thresholds = sorted(args.thresholds)
    hits = {t: np.zeros(17) for t in thresholds}
    totals = np.zeros(17)
    rows = []
    print(
        f"{'image':<44} {'persons':>7} {'found':>5} " + " ".join(f"{'PCK@' + str(t):>8}" for t in thresholds)
    )
    for i in range(0, len(args.pairs), 2):
        ann_path, images_dir = Path(args.pairs[i]), Path(args.pairs[i + 1])
        images = {p.name: p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}
        if ann_path.is_dir():
            annotations = load_openpose_dir(ann_path, sorted(images), args.openpose_scale)
        else:
            raw = json.loads(ann_path.read_text())
            annotations = load_mpii(ann_path) if isinstance(raw, list) else load_coco(ann_path)
        for name, persons in sorted(annotations.items()):
            if name not in images or not persons:
                print(
                    f"{name:<44} skipped: "
                    + ("image not found" if name not in images else "no annotated person")
                )
                continue
            rgb = load_rgb(images[name])
            if args.multi:
                preds = [p.keypoints for p in get_person_segmenter()(rgb).poses]
                scored = [p for p in persons if p.labelled.sum() >= 5] or persons
                pairs: list[tuple[np.ndarray | None, Person]] = []
                free = list(range(len(preds)))
                # greedy matching, best fit first
                cands = sorted(
                    ((fit(preds[a], scored[b]), a, b) for a in range(len(preds)) for b in range(len(scored))),
                    reverse=True,
                )
                used_gt: set[int] = set()
                for _, a, b in cands:
                    if a in free and b not in used_gt:
                        free.remove(a)
                        used_gt.add(b)
                        pairs.append((preds[a], scored[b]))
                pairs += [(None, scored[b]) for b in range(len(scored)) if b not in used_gt]
                found = len(preds)
            else:
                pose = get_pose_estimator()(rgb)
                found = int(pose.found)
                if pose.found:
                    best = max(persons, key=lambda p: fit(pose.keypoints, p))
                    pairs = [(pose.keypoints, best)]
                else:
                    pairs = [(None, max(persons, key=lambda p: p.size))]
            row = {"image": str(images[name]), "persons": len(persons), "found": found, "pck": {}}
            image_hits = {t: 0 for t in thresholds}
            image_total = 0
            for pred, person in pairs:
                totals += person.labelled
                image_total += int(person.labelled.sum())
                for t in thresholds:
                    if pred is not None:
                        ok = correct(pred, person, t)
                        hits[t] += ok
                        image_hits[t] += int(ok.sum())
            for t in thresholds:
                row["pck"][str(t)] = image_hits[t] / max(image_total, 1)
            rows.append(row)
            print(
                f"{name[:44]:<44} {len(persons):>7} {found:>5} "
                + " ".join(f"{row['pck'][str(t)]:8.3f}" for t in thresholds)
            )
    if not rows:
        print("nothing scored", file=sys.stderr)
        return 1
    summary = {
        "images": len(rows),
        "multi": args.multi,
        "joints": int(totals.sum()),
        "pck": {},
        "pck_body12": {},
        "pck_per_joint": {},
    }
    body = np.array(BODY12)
    for t in thresholds:
        summary["pck"][str(t)] = float(hits[t].sum() / max(totals.sum(), 1))
        summary["pck_body12"][str(t)] = float(hits[t][body].sum() / max(totals[body].sum(), 1))
        summary["pck_per_joint"][str(t)] = {
            COCO17[j]: round(float(hits[t][j] / totals[j]), 3) for j in range(17) if totals[j] > 0
        }
    print(
        f"{'all (' + str(summary['joints']) + ' joints)':<44} {'':>7} {'':>5} "
        + " ".join(f"{summary['pck'][str(t)]:8.3f}" for t in thresholds)
    )
    print(
        f"{'body-12 joints':<44} {'':>7} {'':>5} "
        + " ".join(f"{summary['pck_body12'][str(t)]:8.3f}" for t in thresholds)
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"summary": summary, "images": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
