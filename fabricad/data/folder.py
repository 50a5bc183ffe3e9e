"""Plain folders a mill already has, and TILDA-style class folders.

`folder` (like anomalib's Folder): `<root>/good/` (or `normal/`) holds normal images; any other
image folder holds defective ones; masks, when present, sit in `<root>/masks/<defect>/` named like
the image (optionally with a `_mask` suffix). A share of the normal images is kept for testing.
A folder that holds the normal images itself (a mill's folder of photos of good fabric, no
`good/` inside) is the same layout with the root as the normal folder: what a mill has on the
first day is a directory of pictures, not a dataset.

`tilda` (TILDA textile database): class folders `good`, `hole`, `objects`, `oil spot`,
`thread error` (any names) without masks: image-level evaluation only; recognised by a `good`
folder next to other class folders and no `masks` folder. Both are the same loader.
"""

from __future__ import annotations

from pathlib import Path

from fabricad.data.images import list_images
from fabricad.data.samples import DatasetSplit, Sample
from fabricad.errors import DataError

NORMAL_NAMES = ("good", "normal", "ok")
TEST_NORMAL_EVERY = 5
"""Every 5th normal image (sorted by name) is test-normal; the rest train."""


def _normal_dir(path: Path) -> Path | None:
    """`good/` (`normal/`, `ok/`) inside `path`, else `path` itself when it holds images."""
    named = next((path / n for n in NORMAL_NAMES if (path / n).is_dir()), None)
    return named or (path if list_images(path) else None)


def is_folder_dataset(path: Path) -> bool:
    normal = _normal_dir(path)
    return normal is not None and not (path / "train").is_dir() and bool(list_images(normal))


def load_folder(root: Path) -> DatasetSplit:
    normal_dir = _normal_dir(root)
    if normal_dir is None:
        raise DataError(f"{root}: no folder of normal images ({'/'.join(NORMAL_NAMES)})")
    normal = list_images(normal_dir)
    train, test = [], []
    for i, path in enumerate(normal):
        sample = Sample(path, 0, group=str(path))
        (test if i % TEST_NORMAL_EVERY == TEST_NORMAL_EVERY - 1 else train).append(sample)
    masks_root = root / "masks"
    for folder in sorted(d for d in root.iterdir() if d.is_dir() and d not in (normal_dir, masks_root)):
        for path in list_images(folder):
            masks = ()
            if masks_root.is_dir():
                masks = tuple(sorted((masks_root / folder.name).glob(f"{path.stem}.*"))) or tuple(
                    sorted((masks_root / folder.name).glob(f"{path.stem}_mask*"))
                )
            test.append(Sample(path, 1, masks, defect_type=folder.name, group=str(path)))
    defect_classes = any(s.label for s in test)
    fmt = "tilda" if defect_classes and not masks_root.is_dir() else "folder"
    return DatasetSplit(root.name, fmt, train, test)
