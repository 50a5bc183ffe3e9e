"""The operators' defect-type labels as training examples for the bundle's type classifier.

An acknowledgement whose label is a type (not `true_defect` or `false_alarm`) names the frame's
strongest region: its stored image and that region's box become one example. The refit keeps
the examples the bundle's classifier was fitted on (datasets, earlier labels) and replaces the
service's own, so labelling the same defect twice never counts it twice.
"""

from __future__ import annotations

import json

from fabricad.data.images import read_image
from fabricad.defect_types.classifier import Example
from fabricad.defect_types.descriptors import describe
from fabricad.errors import ImageReadError
from fabricad.rolls.grading import FALSE_ALARM
from fabricad.service.defect_log import DefectLog

NOT_TYPES = {FALSE_ALARM, "true_defect"}
SOURCE = "service"


def service_examples(defects: DefectLog, model: str) -> tuple[list[Example], int]:
    """(examples, labelled defects skipped because their image was pruned or is unreadable)."""
    examples, skipped = [], 0
    rows, _ = defects.list(model=model, acknowledged=True, limit=100_000)
    for row in rows:
        if not row.label or row.label in NOT_TYPES:
            continue
        regions = json.loads(row.regions_json)
        path = defects.file_path(row.image_file)
        if not regions or path is None:
            skipped += 1
            continue
        try:
            image = read_image(path)
        except ImageReadError:
            skipped += 1
            continue
        top = regions[0]
        box = (top["x"], top["y"], top["width"], top["height"])
        examples.append(Example(features=describe(image, box).tolist(), label=row.label, source=SOURCE,
                                group=f"defect-{row.id}"))
    return examples, skipped
