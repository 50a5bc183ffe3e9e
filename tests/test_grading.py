"""The 4-point system on hand-made cases, roll geometry, merging and the roll report."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from fabricad.rolls.geometry import CameraPlacement, RollBox, merge_into, region_on_roll
from fabricad.rolls.grading import (
    GradedDefect,
    GradingRules,
    defect_points,
    grade_roll,
    per_100_yd2_to_per_100_m2,
)

RULES = GradingRules()


def defect(i, along, length_mm, width_mm=5.0, across=100.0, label=None):
    return GradedDefect(i, (across, across + width_mm), (along, along + length_mm / 1000), label)


@pytest.mark.parametrize("size, points", [(10, 1), (75, 1), (75.5, 2), (150, 2), (151, 3), (230, 3), (231, 4), (900, 4)])
def test_points_by_length(size, points):
    assert defect_points(defect(1, 3.0, size), RULES) == points
    # length in any direction: a defect across the width counts the same
    assert defect_points(GradedDefect(2, (0, size), (3.0, 3.001)), RULES) == points


def test_holes_and_false_alarms():
    assert defect_points(defect(1, 1, 20, label="hole"), RULES) == 2
    assert defect_points(defect(1, 1, 25, label="hole"), RULES) == 2
    assert defect_points(defect(1, 1, 26, label="hole"), RULES) == 4
    assert defect_points(defect(1, 1, 200, label="false_alarm"), RULES) == 0
    assert defect_points(defect(1, 1, 20, label="slub"), RULES) == 1
    # the configurable rule: small round defects are holes even unlabelled
    rule = GradingRules(compact_as_hole_max_mm=30)
    assert defect_points(defect(1, 1, 20, width_mm=18), rule) == 2
    assert defect_points(defect(1, 1, 20, width_mm=5), rule) == 1  # elongated: a yarn fault, not a hole
    assert defect_points(defect(1, 1, 20, width_mm=18, label="stain"), rule) == 1  # the operator's label wins


def test_rules_are_validated():
    with pytest.raises(ValueError):
        GradingRules(length_limits_mm=[150, 75, 230])


def test_per_metre_cap_and_area_formula():
    # three 3-point defects in metre 2 → capped at 4; one 1-point defect in metre 7
    defects = [defect(1, 2.1, 200), defect(2, 2.4, 200), defect(3, 2.7, 200), defect(4, 7.5, 30)]
    grade = grade_roll(defects, width_mm=1500, length_m=50, rules=RULES)
    assert grade.metre_points == {2: 4, 7: 1}
    assert grade.points == 5
    assert grade.points_per_100_m2 == pytest.approx(5 * 100_000 / (1500 * 50), abs=1e-3)
    assert grade.area_m2 == pytest.approx(75.0)
    assert grade.passed


def test_running_defect_scores_every_metre_and_fails_past_ten_metres():
    short = grade_roll([defect(1, 10.2, 3500)], width_mm=1500, length_m=100, rules=RULES)
    assert short.metre_points == {10: 4, 11: 4, 12: 4, 13: 4}
    assert short.points == 16 and short.passed
    long = grade_roll([defect(1, 10.2, 10_500)], width_mm=1500, length_m=100, rules=RULES)
    assert not long.passed
    assert any("runs 10.5 m" in r for r in long.reasons)


def test_limit_conversion_and_fail_on_points():
    assert per_100_yd2_to_per_100_m2(40) == pytest.approx(47.84, abs=0.01)
    assert RULES.limit_per_100_m2 == pytest.approx(47.84, abs=0.01)
    # 10 m × 1 m roll = 10 m²; 4 points in each of 2 metres = 8 points → 80 per 100 m² > 47.84
    grade = grade_roll([defect(1, 1.2, 300), defect(2, 5.5, 300)], width_mm=1000, length_m=10, rules=RULES)
    assert grade.points == 8 and grade.points_per_100_m2 == pytest.approx(80.0)
    assert not grade.passed
    relabelled = grade_roll([defect(1, 1.2, 300), defect(2, 5.5, 300, label="false_alarm")], 1000, 10, RULES)
    assert relabelled.points == 4 and relabelled.passed  # 40 per 100 m²


def test_region_on_roll_and_merge():
    placement = CameraPlacement(camera_id="cam2", offset_mm=800, mm_per_px=0.5)
    box = region_on_roll({"x": 100, "y": 40, "width": 20, "height": 10, "outline": [[100, 40], [120, 50]]}, 12.0, placement)
    assert box.across_mm == (850.0, 860.0)
    assert box.along_m == pytest.approx((12.02, 12.025))
    assert box.outline[1] == pytest.approx((860.0, 12.025))
    known = {1: RollBox((850, 860), (11.99, 12.021)), 2: RollBox((100, 110), (12.0, 12.01)), 3: RollBox((861, 870), (12.03, 12.04))}
    keep, fold = merge_into(known, box, gap_mm=10)
    assert (keep, fold) == (1, [3])  # continues defect 1, and bridges to defect 3
    assert merge_into(known, box, gap_mm=0) == (1, [])


def test_report_formats(tmp_path):
    from pypdf import PdfReader

    from fabricad.rolls.report import defects_csv, roll_map, roll_pdf

    summary = {"id": "R-17", "article": "denim 12oz", "model": "denim", "width_mm": 1600.0, "length_m": 42.0,
               "started_at": "2026-11-28T10:00:00+00:00", "ended_at": None, "speed_m_per_min": 20,
               "cameras": [{"camera_id": "cam1", "offset_mm": 0, "mm_per_px": 1}],
               "grade": grade_roll([defect(1, 3.0, 120)], 1600, 42, RULES).as_dict(),
               "uninspected": [{"along_m": [10.0, 12.0], "length_m": 2.0, "cameras": ["cam1"]}],
               "uncovered_across_mm": [[1500.0, 1600.0]]}
    defects = [{"id": 1, "along_m": [3.0, 3.12], "across_mm": [100, 105], "width_mm": 5, "length_mm": 120, "points": 2,
                "label": None, "max_score": 0.9, "cameras": ["cam1"], "sightings": [4, 5]}]
    picture = roll_map(summary, defects)
    assert picture.shape[1] == 1600 and picture.dtype == np.uint8
    marker = picture[:, int(40 + 3.06 / 42 * 1520)]
    assert (np.abs(marker.astype(int) - (150, 150, 150)).sum(axis=1) < 10).any()  # an untyped defect at 3 m, in grey
    fabric, gap = (picture[42:188, int(40 + m / 42 * 1520)] for m in (20.0, 11.0))
    assert (fabric == (225, 215, 195)).all() and not (gap == (225, 215, 195)).all(axis=1).any()  # hatched at 10-12 m
    band = picture[int(40 + 1550 / 1600 * 160), 100:1500]  # the last 100 mm across, all along the roll
    assert not (band == (225, 215, 195)).all(axis=1).all()
    rows = defects_csv(defects).splitlines()
    assert rows[0].startswith("id,along_start_m") and rows[1].startswith("1,3.0000,3.1200")
    pdf = roll_pdf(summary, defects, {1: np.zeros((40, 60, 3), np.uint8)})
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "roll R-17" in text and "PASS" in text and "denim 12oz" in text and "3.000-3.120" in text
    assert "2.00 m in 1 stretch: 10.00-12.00 m (cam1)" in text and "1500-1600 mm across" in text


def test_coverage_spans_join_jitter_and_report_what_no_camera_saw():
    from fabricad.rolls.coverage import add_span, gaps, uninspected

    spans: list = []
    assert add_span(spans, 0.0, 0.128, join_m=0.01)  # the first span: the count changed
    assert not add_span(spans, 0.133, 0.261, join_m=0.01)  # 5 mm of timing jitter: the same span
    assert add_span(spans, 0.512, 0.640, join_m=0.01)  # a gap opened
    assert spans == [[0.0, 0.261], [0.512, 0.640]]
    assert add_span(spans, 0.650, 0.600, join_m=0.01) is False and spans[-1] == [0.512, 0.650]  # reversed ends
    assert add_span(spans, 0.255, 0.520, join_m=0.0)  # a late frame closes the gap
    assert spans == [[0.0, 0.650]]
    assert gaps([[0.5, 1.0], [2.0, 3.0]], 4.0) == [(0.0, 0.5), (1.0, 2.0), (3.0, 4.0)]
    assert gaps([[0.0, 5.0]], 4.0) == []

    # two cameras side by side: overlapping gaps are one stretch naming both; a camera that never
    # delivered misses everything; gaps under the tolerance are left out
    seen = {"left": [[0.0, 2.0], [3.0, 10.0]], "right": [[0.0, 2.5], [2.8, 9.995]]}
    stretches = uninspected(seen, ["left", "right"], 10.0, min_gap_m=0.01)
    assert [(s.along_m, s.cameras) for s in stretches] == [((2.0, 3.0), ["left", "right"])]
    assert stretches[0].as_dict() == {"along_m": [2.0, 3.0], "length_m": 1.0, "cameras": ["left", "right"]}
    everything = uninspected(seen, ["left", "dead"], 10.0, min_gap_m=0.01)
    assert [(s.along_m, s.cameras) for s in everything] == [((0.0, 10.0), ["dead", "left"])]


def test_roll_coverage_knows_the_lanes_across_the_width_and_round_trips():
    from fabricad.rolls.coverage import RollCoverage

    seen = RollCoverage()
    assert seen.uncovered_width(1800, 10) == []  # no frame yet: no lane known, nothing claimed
    assert seen.see("left", (0.0, 0.1), (0.0, 900.0), join_m=0.01)
    assert not seen.see("left", (0.1, 0.2), (0.0, 905.0), join_m=0.01)  # a wider frame widens the lane
    seen.see("right", (0.0, 0.2), (1000.0, 1795.0), join_m=0.01)
    assert seen.lanes == {"left": [0.0, 905.0], "right": [1000.0, 1795.0]} and seen.furthest_m == 0.2
    assert seen.uncovered_width(1800, 10) == [(905.0, 1000.0)]  # the 5 mm at the far edge is under the tolerance
    again = RollCoverage.from_json(seen.to_json())
    assert again == seen and again.copy() == seen and again.copy() is not again


def test_uninspected_length_leaves_the_area_and_fails_past_the_limit():
    found = [defect(1, 3.0, 100)]  # 2 points
    whole = grade_roll(found, width_mm=1000, length_m=100, rules=RULES)
    partly = grade_roll(found, width_mm=1000, length_m=100, rules=RULES, uninspected_m=1.5)
    assert partly.area_m2 == pytest.approx(98.5) and partly.uninspected_m == 1.5
    assert partly.points_per_100_m2 == pytest.approx(2 * 100 / 98.5, abs=1e-3)
    assert whole.points_per_100_m2 == pytest.approx(2.0)  # the missing stretch no longer dilutes the points
    assert partly.passed  # 1.5 % is under the default limit of 2 %
    missed = grade_roll(found, width_mm=1000, length_m=100, rules=RULES, uninspected_m=12.0)
    assert not missed.passed and missed.reasons == ["12.00 m of 100.00 m (12%) was not inspected (limit 2 %)"]
    assert grade_roll(found, 1000, 100, GradingRules(max_uninspected_percent=None), uninspected_m=12.0).passed
    narrow = grade_roll(found, width_mm=1000, length_m=100, rules=RULES, uncovered_mm=100)  # a lane nobody watches
    assert narrow.area_m2 == pytest.approx(90.0) and narrow.uncovered_mm == 100
    assert narrow.reasons == ["100 mm of the 1000 mm width (10%) is in no camera's view (limit 2 %)"]


def test_the_roll_pdf_prints_article_names_in_any_script():
    """Turkish, Chinese and Cyrillic article names print as they are, with Debian's DejaVu and WenQuanYi fonts."""
    import io

    from pypdf import PdfReader

    from fabricad.rolls.report import FALLBACK_FONTS, TEXT_FONTS, roll_pdf

    if not Path(TEXT_FONTS[0][0]).is_file() or not Path(FALLBACK_FONTS[0]).is_file():
        pytest.skip("needs fonts-dejavu-core and fonts-wqy-microhei (apt-get install)")
    article = "Kumaş örgü İğne — 棉布平纹 — Ткань"
    summary = {"id": "R-ü", "article": article, "model": None, "width_mm": 1600.0, "length_m": 10.0,
               "started_at": "2026-12-03T10:00:00+00:00", "ended_at": None, "speed_m_per_min": 20,
               "cameras": [{"camera_id": "kamera-1", "offset_mm": 0, "mm_per_px": 1}],
               "grade": grade_roll([], 1600, 10, RULES).as_dict(), "uninspected": [], "uncovered_across_mm": []}
    defects = [{"id": 1, "along_m": [3.0, 3.12], "across_mm": [100, 105], "width_mm": 5, "length_mm": 120, "points": 2,
                "label": "delik (hole) 破洞", "max_score": 0.9, "cameras": ["kamera-1"], "sightings": [4]}]
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(roll_pdf(summary, defects))).pages)
    assert article in text and "roll R-ü" in text and "破洞" in text and "?" not in text  # nothing replaced
