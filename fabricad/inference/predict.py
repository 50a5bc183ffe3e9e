"""`fabricad predict`: inspect files in bulk, keep going past bad ones."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fabricad.data.alignment import Alignment
from fabricad.data.images import IMAGE_EXTENSIONS, check_inspectable, read_image
from fabricad.errors import FabricadError, ImageReadError
from fabricad.inference.engine import InferenceEngine
from fabricad.inference.inspector import captioned_overlay
from fabricad.inference.visualize import save_rgb

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm"}


def expand(inputs: list[Path]) -> list[tuple[Path, str]]:
    """Every file to inspect, with the name its outputs get: folders are searched recursively,
    and a file found in one is named by its path inside it (`hole/000`), so that `good/000.png`
    and `hole/000.png` do not write each other's overlay. Names still equal (the same file name
    given twice) get `-2`, `-3`, ..."""
    found: list[tuple[Path, str]] = []
    for item in inputs:
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
            found += [(p, "__".join(p.relative_to(item).with_suffix("").parts)) for p in files]
        else:
            found.append((item, item.stem))  # missing or unreadable files are reported per item, not here
    taken: dict[str, int] = {}
    named = []
    for path, name in found:
        taken[name] = taken.get(name, 0) + 1
        named.append((path, name if taken[name] == 1 else f"{name}-{taken[name]}"))
    return named


def frames(path: Path, every: int, name: str) -> Iterator[tuple[str, np.ndarray]]:
    """(name, RGB frame) of a video named `name`; raises ImageReadError if it cannot be opened."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ImageReadError(f"{path}: cannot open video")
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                yield f"{name}_f{index:06d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


def run_predict(engine: InferenceEngine, inputs: list[Path], out: Path, every: int = 1, progress: bool = True) -> dict:
    if every < 1:
        raise FabricadError("--every must be at least 1")
    out.mkdir(parents=True, exist_ok=True)
    rows, failures = [], []

    def handle(name: str, source: Path, image: np.ndarray, frame: bool = False) -> None:
        check_inspectable(*image.shape[:2], source=f"{source} ({name})" if frame else str(source))
        result = engine.inspect(image)
        overlay_path = out / f"{name}_overlay.png"
        save_rgb(overlay_path, captioned_overlay(image, result))
        row = {"name": name, "source": str(source), "overlay": overlay_path.name, **result.as_dict()}
        rows.append(row)

    for path, name in tqdm(expand(inputs), desc="inspecting", unit="file", disable=not progress):
        try:
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                for frame_name, frame in frames(path, every, name):
                    handle(frame_name, path, frame, frame=True)
            else:
                handle(name, path, read_image(path))
        except ImageReadError as exc:
            failures.append(str(exc))
    (out / "results.json").write_text(json.dumps({"model": engine.description, "results": rows, "failures": failures}, indent=2))
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "source", "verdict", "score", "normalized_score", "threshold", "regions", "latency_ms",
                         "alignment", "fabric_in_view"])
        for r in rows:
            writer.writerow([r["name"], r["source"], r["verdict"], f"{r['score']:.6f}", f"{r['normalized_score']:.4f}",
                             f"{r['threshold']:.6f}", len(r["regions"]), f"{r['latency_ms']:.1f}",
                             Alignment(**r["alignment"]).describe() if r["alignment"] else "", r["fabric_in_view"]])
    return {"inspected": len(rows), "defects": sum(r["is_defect"] for r in rows),
            "no_fabric": sum(not r["fabric_in_view"] for r in rows), "failed": len(failures), "failures": failures}
