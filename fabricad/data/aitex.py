"""The AITEX Fabric Image Database in its native layout, with the AITEX-256 protocol built in.

Protocol (see the data README): categories are fabric codes 00, 01, 02, 03, 04, 06; per fabric the
roll's normal images sorted by name give 14 training images and the rest test-normal; all
defective images of that fabric code are test images; every 4096x256 image is cut into 256x256
tiles with stride 256, the last one right-aligned; a tile is anomalous when its mask has any
defect pixel; masks of images with two (`_mask1`, `_mask2`) are unioned.
"""

from __future__ import annotations

import re
from pathlib import Path

from fabricad.data.images import image_size, read_mask
from fabricad.data.samples import DatasetSplit, Sample
from fabricad.data.tiling import tile_boxes
from fabricad.errors import DataError

ROLL_TO_FABRIC = {
    "2311694-2040n7u": "00",
    "2608691-202020u": "01",
    "2306894-210033u": "02",
    "2311694-1930c7u": "03",
    "2311517-195063u": "04",
    "2306881-210020u": "05",
    "2311980-185026u": "06",
}
CATEGORIES = ("00", "01", "02", "03", "04", "06")
TRAIN_IMAGES = 14
TILE = 256
NAME = re.compile(r"^(\d{4})_(\d{3})_(\d{2})\.png$")


def is_aitex_root(path: Path) -> bool:
    return (path / "NODefect_images").is_dir() and (path / "Defect_images").is_dir()


def _tiles(path: Path, label_of_tile, masks: tuple[Path, ...], defect: str) -> list[Sample]:
    """The image's tiles, labelled by their masks; the image itself by its defect code (`000` or
    a normal image's "good": none), so a defective scan whose mask marks nothing (0106_010_03)
    is still a defective image."""
    height, width = image_size(path)
    samples = []
    for box in tile_boxes(height, width, TILE):
        label = label_of_tile(box)
        samples.append(Sample(path, label, masks, crop=box, defect_type=defect if label else "good", group=path.name,
                              image_label=int(defect not in ("000", "good"))))
    return samples


def load_aitex(root: Path, category: str) -> DatasetSplit:
    if category not in CATEGORIES:
        raise DataError(f"AITEX category must be a fabric code, one of {', '.join(CATEGORIES)} (got {category!r})")
    rolls = [r for r, code in ROLL_TO_FABRIC.items() if code == category]
    normal = sorted(p for r in rolls for p in (root / "NODefect_images" / r).glob("*.png"))
    if len(normal) <= TRAIN_IMAGES:
        raise DataError(f"AITEX fabric {category}: expected more than {TRAIN_IMAGES} normal images, found {len(normal)}")
    train = [s for p in normal[:TRAIN_IMAGES] for s in _tiles(p, lambda box: 0, (), "good")]
    test = [s for p in normal[TRAIN_IMAGES:] for s in _tiles(p, lambda box: 0, (), "good")]
    masks_dir = root / "Mask_images"
    for path in sorted((root / "Defect_images").glob("*.png")):
        match = NAME.match(path.name)
        if not match or match.group(3) != category:
            continue
        defect = match.group(2)
        masks = tuple(sorted(masks_dir.glob(f"{path.stem}_mask*.png")))
        if not masks:
            continue  # 0100_025_08 has none (and is fabric 08, outside the protocol anyway)
        height, width = image_size(path)
        full = read_mask(masks, (height, width))

        def label(box, full=full):
            x, y, w, h = box
            return int(full[y : y + h, x : x + w].any())

        test.extend(_tiles(path, label, masks, defect))
    return DatasetSplit(f"aitex-{category}", "aitex", train, test)
