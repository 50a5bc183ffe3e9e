"""The line benchmark: what a mill measures, on rolls simulated from a dataset's test scans.

AUROC ranks tiles; a mill buys on the operating point: how many times per 100 m of good fabric
the line is stopped for nothing, how many real defects are found at that setting, how far from
the defect the roll map puts them, and whether the roll gets the grade its true defects give.

A simulated roll (`LineSettings`): the first `teach_in_frames` good scans of the roll (a seeded
random pick of the test's normal scans) are the teach-in; then `roll_length_m` of fabric made of
the remaining normal scans in a seeded random order, drawn again as often as the length needs,
with a random number of the defective scans (each at most once) at random places. A scan is one
frame of a line camera: `mm_per_px` (stated in every report) turns its pixels into fabric
millimetres. Each distinct scan is inferred once (its map comes from `fabricad eval`'s
predictions); every operating point judges those maps with the engine's own `find_regions`.

- a **false alarm** is a region whose box overlaps no true defect (boxes grown by
  `match_tolerance_mm`); alarms per 100 m count them over the rolls' fabric after the teach-in;
- a true defect (a connected part of the scan's mask; parts closer than the tolerance are one)
  is **found** when a region's box overlaps its box; the **localisation error** is the distance
  between its box's centre and the centre of the regions that found it;
- the **grade**: regions placed on the roll and merged as the service's roll tracker merges
  them (`merge_gap_mm`), graded by the 4-point system, against the grade of the true defects'
  boxes on the same roll.

Two thresholds no product can set bound what the model can reach: just above every good scan,
and the strict ceiling, where no region of any scan lies off a true defect. Each operating point
also reports how many of its false alarms lie beside a fabric edge (the selvedge), and the
selvedge band (`OperatingPoint.selvedge_mm`) is measured both ways the product offers: left
uninspected, and judged by a threshold of its own that the teach-in sets from the band's
maxima (`selvedge_threshold`). Beside a band, the teach-in learns the rest of the fabric's
threshold without it, as the service's does from the scores the engine gives.

The distinct good fabric behind these rates is small on AITEX (a few normal scans per fabric):
the report states it beside every rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, Field

from fabricad.data.fabric_edges import background_columns
from fabricad.inference.engine import Region, regions_at
from fabricad.inference.metrics import threshold_for_fpr
from fabricad.inference.operating_point import (
    OperatingPoint,
    per_frame_target,
    teach_selvedge_threshold,
    teach_zones,
    zone_scores,
)
from fabricad.rolls.geometry import CameraPlacement, RollBox, merge_all, region_on_roll
from fabricad.rolls.grading import GradedDefect, GradingRules, grade_roll


class LineSettings(BaseModel):
    mm_per_px: float = Field(0.25, gt=0, le=100, description="fabric millimetres per scan pixel (stated, not measured)")
    rolls: int = Field(20, ge=1, le=10_000)
    roll_length_m: float = Field(25.0, gt=0, le=10_000, description="fabric after the teach-in, per roll")
    teach_in_frames: int = Field(2, ge=1, description="good scans at the start of each roll the teach-in sees")
    target_alarms_per_100_m: float = Field(2.0, gt=0, description="what the teach-in sets its thresholds for")
    zones: int = Field(16, ge=1, le=256, description="bands across the width for per-zone thresholds")
    min_area_mm2: float = Field(4.0, ge=0, description="the size rule measured (regions smaller raise no alarm)")
    min_length_mm: float = Field(3.0, ge=0, description="the length rule measured")
    selvedge_mm: float = Field(25.0, ge=0, description="the selvedge band measured (left uninspected beside each fabric edge)")
    match_tolerance_mm: float = Field(2.0, ge=0)
    merge_gap_mm: float = Field(10.0, ge=0, description="as the service's roll tracker")
    seed: int = 0


@dataclass
class TruthDefect:
    box: tuple[int, int, int, int]
    """x, y, width, height in scan pixels"""


@dataclass
class Frame:
    """One scan on its own pixels: its map, and its true defects."""

    name: str
    anomaly_map: np.ndarray
    defects: list[TruthDefect]
    normal: bool
    background: np.ndarray | None = None
    """(W,) bool: the columns beyond the scan's fabric edges, where the selvedge rule is measured"""
    source: Path | None = None
    """the scan's image file"""


def truth_defects(mask: np.ndarray, tolerance_px: int) -> list[TruthDefect]:
    """The mask's defects: connected parts, those closer than the tolerance taken as one."""
    if not mask.any():
        return []
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * tolerance_px + 1,) * 2, np.uint8)) if tolerance_px else mask
    count, labels = cv2.connectedComponents(grown.astype(np.uint8), connectivity=8)
    defects = []
    for k in range(1, count):
        ys, xs = np.nonzero((labels == k) & mask)
        if len(xs):
            defects.append(TruthDefect((int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)))
    return defects


def frames_of(predictions, tolerance_px: int, edges: bool = False) -> list[Frame]:
    """Whole scans from `fabricad eval`'s predictions: the maps of a scan's tiles put back where
    they were cut (AITEX tiles do not overlap; where tiles do, the later one wins), and its mask
    likewise. A whole image is a frame of its own, at the network's size. With `edges`, each
    scan's fabric edges are found as the engine finds them (one decode per scan)."""
    groups: dict[str, list[int]] = {}
    for i, sample in enumerate(predictions.samples):
        groups.setdefault((sample.group or str(sample.path)) if sample.crop is not None else f"#{i}", []).append(i)
    frames = []
    for name, index in groups.items():
        samples = [predictions.samples[i] for i in index]
        if samples[0].crop is None:
            amap, mask = predictions.maps[index[0]].astype(np.float32), predictions.masks[index[0]]
        else:
            width = max(s.crop[0] + s.crop[2] for s in samples)
            height = max(s.crop[1] + s.crop[3] for s in samples)
            amap, mask = np.zeros((height, width), np.float32), np.zeros((height, width), bool)
            for i, s in zip(index, samples):
                x, y, w, h = s.crop
                tile_map, tile_mask = predictions.maps[i].astype(np.float32), predictions.masks[i]
                if tile_map.shape != (h, w):
                    tile_map = cv2.resize(tile_map, (w, h), interpolation=cv2.INTER_LINEAR)
                    tile_mask = cv2.resize(tile_mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
                amap[y:y + h, x:x + w], mask[y:y + h, x:x + w] = tile_map, tile_mask
        normal = all(s.full_image_label == 0 for s in samples)
        background = None
        if edges and samples[0].crop is not None:
            background = background_columns(samples[0].load_source())[:width]
        frames.append(Frame(name, amap, truth_defects(mask, tolerance_px), normal, background, samples[0].path))
    return frames


@dataclass
class Strategy:
    """An operating point under test: how its threshold is set, and which rules it adds."""

    name: str
    threshold: str
    """'calibrated' (the bundle's), 'teach-in' (from the roll's first good frames), or one of two
    thresholds no product can set, which show what the model can reach on this test set:
    'ceiling' (just above every good scan's maximum: no false alarm on the normal scans, the
    defect-free parts of the defective scans still raise theirs) and 'strict' (the lowest
    threshold at which no region of any scan lies off a true defect)"""
    zones: bool = False
    sizes: bool = False
    selvedge: bool = False
    selvedge_taught: bool = False
    """with `selvedge`: the band judged against a threshold the teach-in sets for it, instead of
    left uninspected"""


STRATEGIES = (
    Strategy("ceiling: no false alarm anywhere", "strict"),
    Strategy("ceiling: no false alarm anywhere, selvedge band", "strict", selvedge=True),
    Strategy("ceiling: just above every good scan", "ceiling"),
    Strategy("calibrated threshold", "calibrated"),
    Strategy("teach-in threshold", "teach-in"),
    Strategy("teach-in + size rule", "teach-in", sizes=True),
    Strategy("teach-in zones", "teach-in", zones=True),
    Strategy("teach-in zones + size rule", "teach-in", zones=True, sizes=True),
    Strategy("teach-in + selvedge band", "teach-in", selvedge=True),
    Strategy("teach-in + size rule + selvedge band", "teach-in", sizes=True, selvedge=True),
    Strategy("teach-in + selvedge threshold", "teach-in", selvedge=True, selvedge_taught=True),
    Strategy("teach-in + size rule + selvedge threshold", "teach-in", sizes=True, selvedge=True, selvedge_taught=True),
)


def overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], grow: int) -> bool:
    return (a[0] - grow < b[0] + b[2] and b[0] < a[0] + a[2] + grow
            and a[1] - grow < b[1] + b[3] and b[1] < a[1] + a[3] + grow)


@dataclass
class FrameOutcome:
    regions: list[Region]
    false_alarms: int
    found: list[int]
    """indices of the frame's true defects some region found"""
    errors_px: list[float] = field(default_factory=list)
    false_at_edges: int = 0
    """false alarms whose box reaches into the band beside a fabric edge (`LineSettings.selvedge_mm`)"""


def selvedge_band(frame: Frame, op: OperatingPoint) -> np.ndarray | None:
    """(W,) bool: the frame's columns in the operating point's selvedge band; None without a band
    or a fabric edge in view."""
    return op.selvedge_columns(frame.background) if op.selvedge_mm and frame.background is not None else None


def without_selvedge(frame: Frame, band: np.ndarray | None) -> np.ndarray:
    """The frame's map with its selvedge `band` zeroed (a copy where it has one): what the engine
    judges where it leaves the band uninspected, and what a teach-in beside a band learns the
    rest of the fabric's threshold from."""
    if band is None:
        return frame.anomaly_map
    amap = frame.anomaly_map.copy()
    amap[:, band] = 0.0
    return amap


def judge_frame(frame: Frame, threshold: float, op: OperatingPoint, tolerance_px: int,
                edge_band: np.ndarray | None = None) -> FrameOutcome:
    band = selvedge_band(frame, op)
    amap = without_selvedge(frame, band) if op.leaves_band_uninspected() else frame.anomaly_map
    regions = regions_at(amap, threshold, op, band)
    boxes = [(r.x, r.y, r.width, r.height) for r in regions]
    hits = [[k for k, d in enumerate(frame.defects) if overlaps(box, d.box, tolerance_px)] for box in boxes]
    found, errors = [], []
    for k, defect in enumerate(frame.defects):
        mine = [box for box, h in zip(boxes, hits) if k in h]
        if not mine:
            continue
        found.append(k)
        x0, y0 = min(b[0] for b in mine), min(b[1] for b in mine)
        x1, y1 = max(b[0] + b[2] for b in mine), max(b[1] + b[3] for b in mine)
        dx, dy, dw, dh = defect.box
        errors.append(float(np.hypot((x0 + x1) / 2 - (dx + dw / 2), (y0 + y1) / 2 - (dy + dh / 2))))
    at_edges = 0
    if edge_band is not None:
        at_edges = sum(1 for box, h in zip(boxes, hits) if not h and edge_band[box[0]:box[0] + box[2]].any())
    return FrameOutcome(regions, sum(1 for h in hits if not h), found, errors, at_edges)


@dataclass
class Roll:
    teach: list[int]
    frames: list[int]
    """indices into the frame list, in roll order"""


def simulate_rolls(frames: list[Frame], settings: LineSettings) -> list[Roll]:
    normal = [i for i, f in enumerate(frames) if f.normal]
    defective = [i for i, f in enumerate(frames) if not f.normal]
    if len(normal) <= settings.teach_in_frames:
        raise ValueError(f"the line benchmark needs more than {settings.teach_in_frames} normal test scans "
                         f"(the teach-in's) and has {len(normal)}")
    frame_m = frames[normal[0]].anomaly_map.shape[0] * settings.mm_per_px / 1000
    length = max(1, round(settings.roll_length_m / frame_m))
    rng = np.random.default_rng(settings.seed)
    rolls = []
    for _ in range(settings.rolls):
        order = list(rng.permutation(normal))
        teach, good = order[:settings.teach_in_frames], order[settings.teach_in_frames:]
        picked = list(rng.choice(defective, size=int(rng.integers(0, len(defective) + 1)), replace=False)) if defective else []
        body = [good[k % len(good)] if k < len(good) else good[int(rng.integers(len(good)))]
                for k in range(max(length - len(picked), 0))]
        for d in picked:
            body.insert(int(rng.integers(0, len(body) + 1)), d)
        rolls.append(Roll([int(i) for i in teach], [int(i) for i in body]))
    return rolls


def good_scan_ceiling(frames: list[Frame]) -> float:
    return float(np.nextafter(max(float(f.anomaly_map.max()) for f in frames if f.normal), np.inf))


def strict_ceiling(frames: list[Frame], tolerance_px: int, op: OperatingPoint | None = None, steps: int = 200) -> float:
    """The lowest threshold, on a grid from the highest map value down to the good-scan ceiling,
    above which no region of any scan lies off a true defect (the defective scans' healthy parts
    included). Searched from the top: a region can split as the threshold rises, so the count of
    false alarms need not fall steadily with it."""
    top = float(np.nextafter(max(float(f.anomaly_map.max()) for f in frames), np.inf))
    lowest = top
    for threshold in np.linspace(top, good_scan_ceiling(frames), steps):
        if any(judge_frame(f, float(threshold), op or OperatingPoint(), tolerance_px).false_alarms for f in frames):
            break
        lowest = float(threshold)
    return lowest


def operating_point(strategy: Strategy, frames: list[Frame], teach: list[int], calibrated: float,
                    settings: LineSettings, strict: dict[bool, float] | None = None) -> tuple[float, OperatingPoint]:
    """The threshold and the operating point (rules, zones) `strategy` puts in force for a roll."""
    frame_m = frames[teach[0]].anomaly_map.shape[0] * settings.mm_per_px / 1000
    target = per_frame_target(settings.target_alarms_per_100_m, frame_m)
    op = OperatingPoint(mm_per_px=settings.mm_per_px,
                        min_area_mm2=settings.min_area_mm2 if strategy.sizes else 0.0,
                        min_length_mm=settings.min_length_mm if strategy.sizes else 0.0,
                        selvedge_mm=settings.selvedge_mm if strategy.selvedge else 0.0)
    # The teach-in sees the frames as the engine scores them: beside a selvedge band, without it
    # (the band, if judged at all, is taught apart, `teach_selvedge`).
    maps = [without_selvedge(frames[i], selvedge_band(frames[i], op)) for i in teach]
    if strategy.threshold == "calibrated":
        return calibrated, op
    if strategy.threshold == "ceiling":
        return good_scan_ceiling(frames), op
    if strategy.threshold == "strict":
        if strict is None or strategy.selvedge not in strict:
            return strict_ceiling(frames, round(settings.match_tolerance_mm / settings.mm_per_px), op), op
        return strict[strategy.selvedge], op
    # Each frame's bands are samples of the good fabric's maxima: a teach-in of a few frames has
    # `zones` times as many of them as frames, and a threshold for target / zones per band is one
    # for about `target` per frame.
    bands = np.concatenate([zone_scores(m, settings.zones) for m in maps])
    threshold = threshold_for_fpr(bands, target / settings.zones)
    if strategy.zones:
        # A band's own teach-in only ever raises its threshold above the frame's: a few frames
        # cannot show how high a calm band may go, but they do show a band that is always high.
        op.zone_thresholds = [max(z, threshold) for z in teach_zones(maps, settings.zones, target)]
    if strategy.selvedge_taught:
        op.selvedge_threshold = teach_selvedge([frames[i] for i in teach], op, threshold, target)
    return threshold, op


def teach_selvedge(frames: list[Frame], op: OperatingPoint, threshold: float, target: float) -> float | None:
    """The selvedge band's threshold from the teach-in's good frames, as the service's teach-in
    sets it (`teach_selvedge_threshold`). None where no frame shows a fabric edge: the band is
    then left uninspected."""
    maxima = [float(f.anomaly_map[:, band].max()) for f in frames
              for band in [selvedge_band(f, op)] if band is not None and band.any()]
    return teach_selvedge_threshold(maxima, target, threshold)


def _graded(boxes: list[RollBox], settings: LineSettings) -> list[GradedDefect]:
    return [GradedDefect(k, b.across_mm, b.along_m) for k, b in enumerate(merge_all(boxes, settings.merge_gap_mm))]


def run_line_benchmark(frames: list[Frame], calibrated_threshold: float, settings: LineSettings,
                       strategies=STRATEGIES, rules: GradingRules | None = None) -> dict:
    """Every strategy on the same simulated rolls: a dict of figures per strategy, and what the
    rolls were made of."""
    rules = rules or GradingRules()
    tolerance = round(settings.match_tolerance_mm / settings.mm_per_px)
    rolls = simulate_rolls(frames, settings)
    frame_h, frame_w = frames[0].anomaly_map.shape
    frame_m, width_mm = frame_h * settings.mm_per_px / 1000, frame_w * settings.mm_per_px
    placement = CameraPlacement(camera_id="line", mm_per_px=settings.mm_per_px)
    truth_grades = []
    for roll in rolls:
        boxes = [region_on_roll({"x": d.box[0], "y": d.box[1], "width": d.box[2], "height": d.box[3]}, k * frame_m, placement)
                 for k, i in enumerate(roll.frames) for d in frames[i].defects]
        truth_grades.append(grade_roll(_graded(boxes, settings), width_mm, len(roll.frames) * frame_m, rules))
    fabric_m = sum(len(r.frames) for r in rolls) * frame_m
    out: dict = {"settings": settings.model_dump(), "rolls": len(rolls),
                 "normal_scans": sum(f.normal for f in frames), "defective_scans": sum(not f.normal for f in frames),
                 "true_defects": sum(len(f.defects) for f in frames),
                 "distinct_good_m": round(sum(f.normal for f in frames) * frame_m, 3),
                 "fabric_m": round(fabric_m, 1),
                 "rolls_passing_truth": sum(g.passed for g in truth_grades), "strategies": {}}
    # The strict ceilings take a search each: once per benchmark, not per roll.
    strict = {s.selvedge: strict_ceiling(frames, tolerance, OperatingPoint(mm_per_px=settings.mm_per_px,
                                                                           selvedge_mm=settings.selvedge_mm * s.selvedge))
              for s in strategies if s.threshold == "strict"}
    # Where false alarms lie: the band beside each fabric edge is measured for every strategy.
    edges = OperatingPoint(mm_per_px=settings.mm_per_px, selvedge_mm=settings.selvedge_mm)
    bands = [edges.selvedge_columns(f.background) if f.background is not None and settings.selvedge_mm else None
             for f in frames]
    for strategy in strategies:
        alarms = found = defects = agree = at_edges = 0
        errors: list[float] = []
        points_off: list[int] = []
        for roll, truth in zip(rolls, truth_grades):
            threshold, op = operating_point(strategy, frames, roll.teach, calibrated_threshold, settings, strict)
            judged = {i: judge_frame(frames[i], threshold, op, tolerance, bands[i]) for i in set(roll.frames)}
            boxes = []
            for k, i in enumerate(roll.frames):
                outcome = judged[i]
                alarms += outcome.false_alarms
                at_edges += outcome.false_at_edges
                found += len(outcome.found)
                defects += len(frames[i].defects)
                errors += outcome.errors_px
                boxes += [region_on_roll(r.as_dict(), k * frame_m, placement) for r in outcome.regions]
            grade = grade_roll(_graded(boxes, settings), width_mm, len(roll.frames) * frame_m, rules)
            agree += grade.passed == truth.passed
            points_off.append(abs(grade.points - truth.points))
        mm = np.asarray(errors) * settings.mm_per_px
        out["strategies"][strategy.name] = {
            "false_alarms_per_100_m": round(alarms / fabric_m * 100, 2),
            "defect_recall": round(found / defects, 4) if defects else None,
            "localisation_mm_median": round(float(np.median(mm)), 2) if mm.size else None,
            "localisation_mm_p90": round(float(np.percentile(mm, 90)), 2) if mm.size else None,
            "grade_agreement": round(agree / len(rolls), 4),
            "false_alarm_share_at_edges": (round(at_edges / alarms, 4) if alarms else None) if any(b is not None for b in bands)
                                     else None,
            "points_error_mean": round(float(np.mean(points_off)), 2),
        }
    return out


def line_table(result: dict) -> list[str]:
    """The Markdown lines of one dataset's line benchmark (report.md, BENCHMARKS.md)."""
    s = result["settings"]
    lines = [f"{result['rolls']} simulated rolls of {s['roll_length_m']:g} m at {s['mm_per_px']:g} mm/px (an assumption, "
             f"not a measurement), teach-in on each roll's first {s['teach_in_frames']} good scan(s) for "
             f"{s['target_alarms_per_100_m']:g} alarms per 100 m; built from {result['normal_scans']} normal scans "
             f"({result['distinct_good_m']:g} m of distinct good fabric) and {result['defective_scans']} defective ones "
             f"({result['true_defects']} true defects); {result['rolls_passing_truth']} of the rolls pass on their true "
             f"defects. Size rule: ≥ {s['min_area_mm2']:g} mm² and ≥ {s['min_length_mm']:g} mm; zones: "
             f"{s['zones']} bands across the width; selvedge band: {s['selvedge_mm']:g} mm beside each fabric edge.", "",
             "| operating point | false alarms / 100 m | of them beside a fabric edge | defect recall "
             "| localisation mm (median, p90) | grade agreement | mean points error |", "|---|---|---|---|---|---|---|"]
    for name, r in result["strategies"].items():
        recall = "n/a" if r["defect_recall"] is None else f"{r['defect_recall']:.3f}"
        where = "n/a" if r["localisation_mm_median"] is None else f"{r['localisation_mm_median']:.1f}, {r['localisation_mm_p90']:.1f}"
        edges = "n/a" if r.get("false_alarm_share_at_edges") is None else f"{r['false_alarm_share_at_edges']:.0%}"
        lines.append(f"| {name} | {r['false_alarms_per_100_m']:.1f} | {edges} | {recall} | {where} | {r['grade_agreement']:.2f} "
                     f"| {r['points_error_mean']:.1f} |")
    return lines
