"""MVTec AD layout: `<category>/train/good`, `test/<defect>`, `ground_truth/<defect>/*_mask.png`."""

from __future__ import annotations

from pathlib import Path

from fabricad.data.images import IMAGE_EXTENSIONS, list_images
from fabricad.data.samples import DatasetSplit, Sample
from fabricad.errors import DataError


def is_mvtec_category(path: Path) -> bool:
    return (path / "train" / "good").is_dir()


def load_mvtec(category: Path) -> DatasetSplit:
    train = [Sample(p, group=str(p)) for p in list_images(category / "train" / "good")]
    if not train:
        raise DataError(f"{category / 'train' / 'good'} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    test = []
    test_root = category / "test"
    if test_root.is_dir():
        for defect_dir in sorted(d for d in test_root.iterdir() if d.is_dir()):
            defect = defect_dir.name
            for path in list_images(defect_dir):
                if defect == "good":
                    test.append(Sample(path, 0, defect_type="good", group=str(path)))
                    continue
                masks = tuple(sorted((category / "ground_truth" / defect).glob(f"{path.stem}_mask*")))
                test.append(Sample(path, 1, masks, defect_type=defect, group=str(path)))
    return DatasetSplit(category.name, "mvtec", train, test)

