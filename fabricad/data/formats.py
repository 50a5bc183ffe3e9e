"""Which dataset format a folder holds, and loading it.

`--data` may name one category folder or a dataset root plus `--category`. Formats register
here with a detector and a loader, so new layouts (AITEX, plain folders, TILDA) plug in without
touching the CLI or training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fabricad.data.aitex import CATEGORIES as AITEX_CATEGORIES
from fabricad.data.aitex import is_aitex_root, load_aitex
from fabricad.data.folder import is_folder_dataset, load_folder
from fabricad.data.mvtec import is_mvtec_category, load_mvtec
from fabricad.data.samples import DatasetSplit
from fabricad.errors import DataError


@dataclass(frozen=True)
class DatasetFormat:
    name: str
    layout: str
    """How the layout looks, for error messages."""
    detect: Callable[[Path], bool]
    load: Callable[[Path], DatasetSplit]


FORMATS: list[DatasetFormat] = [
    DatasetFormat("mvtec", "<category>/train/good/*.png [+ test/<defect>/, ground_truth/<defect>/]", is_mvtec_category, load_mvtec),
    DatasetFormat("folder", "<root>/good/*.png (or <root>/*.png) + <root>/<defect>/*.png [+ masks/<defect>/] (TILDA: class folders, no masks)", is_folder_dataset, load_folder),
]
"""Formats whose root holds several categories and which need --category (no category folder)."""
ROOT_FORMATS: list[tuple[str, str, Callable[[Path], bool], Callable[[Path, str], DatasetSplit]]] = [
    ("aitex", f"AITEX root with NODefect_images/, Defect_images/, Mask_images/ and --category {'|'.join(AITEX_CATEGORIES)}", is_aitex_root, load_aitex),
]


def _safe_category(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise DataError(f"invalid category name {name!r}")
    return name


def load_dataset(path: str | Path, category: str | None = None) -> DatasetSplit:
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    for _, _, detect, load in ROOT_FORMATS:
        if detect(root):
            if not category:
                raise DataError(f"{root} is a multi-category dataset: add --category NAME")
            return load(root, _safe_category(category))
    candidates = [root / _safe_category(category), root] if category else [root]
    for folder in candidates:
        for fmt in FORMATS:
            if fmt.detect(folder):
                return fmt.load(folder)
    layouts = "\n".join([f"  - {f.name}: {f.layout}" for f in FORMATS] + [f"  - {n}: {lay}" for n, lay, _, _ in ROOT_FORMATS])
    hint = f" with category {category!r}" if category else ""
    subdirs = sorted(d.name for d in root.iterdir() if d.is_dir())[:10]
    raise DataError(
        f"{root}{hint} matches no known dataset layout. Expected one of:\n{layouts}\n"
        f"Give a category folder, or the dataset root with --category NAME"
        + (f" (sub-folders here: {', '.join(subdirs)})" if subdirs else " (no images or sub-folders here)")
    )
