"""Which dataset format a folder holds, and loading it.

`--data` may name one category folder or a dataset root plus `--category`. Formats register
here with a detector and a loader, so new layouts (AITEX, plain folders, TILDA) plug in without
touching the CLI or training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
]


def _safe_category(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise DataError(f"invalid category name {name!r}")
    return name


def load_dataset(path: str | Path, category: str | None = None) -> DatasetSplit:
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    candidates = [root / _safe_category(category), root] if category else [root]
    for folder in candidates:
        for fmt in FORMATS:
            if fmt.detect(folder):
                return fmt.load(folder)
    layouts = "\n".join(f"  - {f.name}: {f.layout}" for f in FORMATS)
    hint = f" with category {category!r}" if category else ""
    subdirs = sorted(d.name for d in root.iterdir() if d.is_dir())[:10]
    raise DataError(
        f"{root}{hint} matches no known dataset layout. Expected one of:\n{layouts}\n"
        f"Give a category folder, or the dataset root with --category NAME"
        + (f" (sub-folders here: {', '.join(subdirs)})" if subdirs else " (the folder is empty)")
    )
