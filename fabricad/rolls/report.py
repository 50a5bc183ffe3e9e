"""The per-roll report: roll map picture, JSON, CSV and PDF.

The inputs are plain dicts (the roll summary and its defects, as the service's API gives them) so
the report can be rebuilt offline from an exported JSON as well as produced by the service.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
from fpdf import FPDF

from fabricad.defect_types.classifier import UNKNOWN
from fabricad.rolls.grading import FALSE_ALARM

TYPE_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                (227, 119, 194), (188, 189, 34), (23, 190, 207), (82, 82, 82)]  # RGB, matplotlib's tab10
UNTYPED = (150, 150, 150)
CSV_FIELDS = ["id", "along_start_m", "along_end_m", "across_start_mm", "across_end_mm", "width_mm", "length_mm",
              "points", "label", "type", "type_confidence", "max_score", "cameras", "sightings"]


def kind_of(defect: dict) -> str:
    """What a defect is on the report: the operator's label, else the predicted type."""
    return defect.get("label") or defect.get("type") or "untyped"


def type_colours(defects: list[dict]) -> dict[str, tuple[int, int, int]]:
    """One colour per kind on this roll, in order of first appearance (the legend's order)."""
    kinds = list(dict.fromkeys(kind_of(d) for d in defects))
    named = [k for k in kinds if k not in ("untyped", UNKNOWN, FALSE_ALARM)]
    colours = {k: TYPE_PALETTE[i % len(TYPE_PALETTE)] for i, k in enumerate(named)}
    return {k: colours.get(k, UNTYPED) for k in kinds}


def points_by_type(defects: list[dict]) -> list[tuple[str, int, int]]:
    """(kind, defects, points before the per-metre cap), most points first."""
    table: dict[str, list[int]] = {}
    for d in defects:
        table.setdefault(kind_of(d), []).append(d.get("points") or 0)
    return sorted(((k, len(v), sum(v)) for k, v in table.items()), key=lambda row: (-row[2], row[0]))


def roll_map(summary: dict, defects: list[dict], width_px: int = 1600) -> np.ndarray:
    """The roll as a strip (start at the left, width top to bottom) with defects coloured by type
    (the operator's label where there is one) and numbered; a legend names the colours."""
    length = max(summary["length_m"], max((d["along_m"][1] for d in defects), default=0.0), 1e-3)
    width_mm = summary["width_mm"]
    margin, strip_h = 40, 160
    scale_x = (width_px - 2 * margin) / length  # px per metre
    scale_y = strip_h / width_mm  # px per mm across
    image = np.full((strip_h + 2 * margin + 12, width_px, 3), 255, np.uint8)
    cv2.rectangle(image, (margin, margin), (width_px - margin, margin + strip_h), (225, 215, 195), -1)
    # hatched: what no camera result vouches for (stretches along the roll, bands across it)
    for stretch in summary.get("uninspected", []):
        x0, x1 = (int(margin + a * scale_x) for a in stretch["along_m"])
        _hatch(image, (x0, x1), (margin, margin + strip_h))
    for band in summary.get("uncovered_across_mm", []):
        _hatch(image, (margin, width_px - margin), tuple(int(margin + a * scale_y) for a in band))
    cv2.rectangle(image, (margin, margin), (width_px - margin, margin + strip_h), (90, 90, 90), 1)
    step = max(1.0, 10 ** np.floor(np.log10(length)) / 2) if length > 2 else 0.25
    metre = 0.0
    while metre <= length + 1e-9:
        x = int(margin + metre * scale_x)
        cv2.line(image, (x, margin + strip_h), (x, margin + strip_h + 6), (60, 60, 60), 1)
        cv2.putText(image, f"{metre:g} m", (x - 12, margin + strip_h + 22), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1)
        metre += step
    colours = type_colours(defects)
    for d in defects:
        x0, x1 = (int(margin + a * scale_x) for a in d["along_m"])
        y0, y1 = (int(margin + a * scale_y) for a in d["across_mm"])
        colour = colours[kind_of(d)]
        cv2.rectangle(image, (x0 - 3, y0 - 3), (max(x1, x0) + 3, max(y1, y0) + 3), colour, -1)
        cv2.rectangle(image, (x0 - 3, y0 - 3), (max(x1, x0) + 3, max(y1, y0) + 3), (30, 30, 30), 1)
        cv2.putText(image, str(d["id"]), (x0, max(y0 - 6, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (30, 30, 30), 1)
    if summary.get("uninspected") or summary.get("uncovered_across_mm"):
        cv2.putText(image, "hatched: not inspected", (width_px - margin - 175, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (90, 90, 90), 1)
    x = margin
    for kind, colour in colours.items():  # the legend, under the metre marks
        cv2.rectangle(image, (x, margin + strip_h + 28), (x + 10, margin + strip_h + 38), colour, -1)
        cv2.putText(image, kind, (x + 14, margin + strip_h + 37), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (30, 30, 30), 1)
        x += 24 + 8 * len(kind)
    title = f"roll {summary['id']}  {summary['article']}  {length:.2f} m x {width_mm:g} mm"
    cv2.putText(image, title, (margin, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (20, 20, 20), 1)
    return image


def _hatch(image: np.ndarray, xs: tuple[int, int], ys: tuple[int, int]) -> None:
    """Grey diagonal hatching over the box `xs` × `ys` of `image`, in place."""
    (x0, x1), (y0, y1) = xs, ys
    patch = np.full((max(y1 - y0, 1), max(x1 - x0, 1), 3), 205, np.uint8)
    h = patch.shape[0]
    for x in range(-h, patch.shape[1], 8):
        cv2.line(patch, (x, h), (x + h, 0), (120, 120, 120), 1)  # OpenCV clips to the patch
    image[y0:y0 + patch.shape[0], x0:x0 + patch.shape[1]] = patch


def not_inspected_text(stretches: list[dict]) -> str:
    """'none', or the total and each stretch with the cameras that missed it (the first ten)."""
    if not stretches:
        return "none"
    total = sum(s["length_m"] for s in stretches)
    listed = "; ".join(f"{s['along_m'][0]:.2f}-{s['along_m'][1]:.2f} m ({', '.join(s['cameras'])})" for s in stretches[:10])
    more = f"; and {len(stretches) - 10} more" if len(stretches) > 10 else ""
    return f"{total:.2f} m in {len(stretches)} stretch{'es' if len(stretches) > 1 else ''}: {listed}{more}"


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return buffer.tobytes()


def defects_csv(defects: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for d in defects:
        writer.writerow({
            "id": d["id"], "along_start_m": f"{d['along_m'][0]:.4f}", "along_end_m": f"{d['along_m'][1]:.4f}",
            "across_start_mm": f"{d['across_mm'][0]:.1f}", "across_end_mm": f"{d['across_mm'][1]:.1f}",
            "width_mm": d["width_mm"], "length_mm": d["length_mm"], "points": d.get("points"),
            "label": d.get("label") or "", "type": d.get("type") or "",
            "type_confidence": "" if d.get("type_confidence") is None else f"{d['type_confidence']:.3f}",
            "max_score": f"{d['max_score']:.4f}",
            "cameras": " ".join(d.get("cameras", [])), "sightings": " ".join(map(str, d.get("sightings", []))),
        })
    return out.getvalue()


# Unicode fonts for the PDF, first found wins per role: a Latin/Greek/Cyrillic face with bold
# (Turkish, Polish, Vietnamese… article names), then fallbacks for the scripts it lacks (CJK).
# FABRICAD_REPORT_FONTS (paths separated by os.pathsep) puts a mill's own fonts first.
TEXT_FONTS = [("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
              ("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
               "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf")]
FALLBACK_FONTS = ["/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
                  "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"]


def _unicode_fonts(pdf: FPDF) -> str:
    """Register the Unicode fonts found on this machine; the family to write in. Without any,
    the PDF's core font prints what Latin-1 has and '?' for the rest (said in the log)."""
    import logging
    import os

    own = [p for p in os.environ.get("FABRICAD_REPORT_FONTS", "").split(os.pathsep) if p]
    text = next(((r, b) for r, b in [(p, p) for p in own[:1]] + TEXT_FONTS if Path(r).is_file()), None)
    if text is None:
        logging.getLogger(__name__).warning("no Unicode font for roll reports (apt-get install fonts-dejavu-core "
                                            "fonts-wqy-microhei, or set FABRICAD_REPORT_FONTS): non-Latin-1 text prints as '?'")
        return "Helvetica"
    regular, bold = text
    pdf.add_font("report", "", regular)
    pdf.add_font("report", "B", bold if Path(bold).is_file() else regular)
    fallbacks = []
    for i, path in enumerate(p for p in own[1:] + FALLBACK_FONTS if Path(p).is_file()):
        name = f"fallback{i}"
        pdf.add_font(name, "", path)
        pdf.add_font(name, "B", path)
        fallbacks.append(name)
    if fallbacks:
        pdf.set_fallback_fonts(fallbacks)
    return "report"


def _cell_text(value, family: str = "Helvetica") -> str:
    text = str(value)
    return text if family != "Helvetica" else text.encode("latin-1", "replace").decode("latin-1")


def roll_pdf(summary: dict, defects: list[dict], thumbnails: dict[int, np.ndarray] | None = None) -> bytes:
    """A printable report: summary, verdict, points table, roll map, defect thumbnails."""
    thumbnails = thumbnails or {}
    grade = summary["grade"]
    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.set_auto_page_break(True, margin=12)
    family = _unicode_fonts(pdf)

    def cell_text(value) -> str:
        return _cell_text(value, family)

    pdf.add_page()
    pdf.set_font(family, "B", 16)
    pdf.cell(0, 9, cell_text(f"Roll inspection report - roll {summary['id']}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, "", 10)
    pdf.cell(0, 5, f"generated {datetime.now().astimezone().isoformat(timespec='seconds')} by fabricad", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    verdict = "PASS" if grade["passed"] else "FAIL"
    pdf.set_font(family, "B", 14)
    pdf.set_text_color(*((22, 128, 61) if grade["passed"] else (185, 28, 28)))
    pdf.cell(0, 8, f"Grade: {verdict}  -  {grade['points']} points, {grade['points_per_100_m2']:.1f} points per 100 m²"
                   f" (limit {grade['limit_per_100_m2']:g})", new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.set_font(family, "", 10)
    for reason in grade["reasons"]:
        pdf.cell(0, 5, cell_text(f"- {reason}"), new_x="LMARGIN", new_y="NEXT")
    rows = [
        ("Article", summary["article"]), ("Model", summary.get("model") or "(camera default)"),
        ("Usable width", f"{summary['width_mm']:g} mm"), ("Inspected length", f"{summary['length_m']:.2f} m"),
        ("Area", f"{grade['area_m2']:.2f} m²"), ("Started", summary["started_at"]),
        ("Ended", summary.get("ended_at") or "running"), ("Defects", str(len(defects))),
        ("Not inspected", not_inspected_text(summary.get("uninspected", []))),
        ("In no camera's view", "; ".join(f"{a:g}-{b:g} mm across" for a, b in summary.get("uncovered_across_mm", []))
         or "none"),
        ("Cameras", ", ".join(f"{c['camera_id']} @ {c['offset_mm']:g} mm, {c['mm_per_px']:g} mm/px" for c in summary["cameras"])),
    ]
    pdf.ln(2)
    with pdf.table(col_widths=(40, 200), first_row_as_headings=False) as table:
        for key, value in rows:
            table.row([key, cell_text(value)])
    pdf.ln(4)
    picture = roll_map(summary, defects)
    pdf.image(io.BytesIO(png_bytes(picture)), w=270)
    if defects:
        pdf.ln(2)
        pdf.set_font(family, "B", 11)
        pdf.cell(0, 7, "Points per defect type", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, "", 10)
        with pdf.table(col_widths=(60, 30, 30), width=120, align="LEFT") as table:
            table.row(["type (label, else predicted)", "defects", "points"])
            for kind, count, points in points_by_type(defects):
                table.row([cell_text(kind), str(count), str(points)])
    pdf.add_page()
    pdf.set_font(family, "B", 12)
    pdf.cell(0, 8, "Defects and points", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, "", 9)
    # Rows as tall as a readable thumbnail when there are pictures (fpdf2 sizes cell images by line height).
    with pdf.table(col_widths=(12, 28, 28, 22, 22, 14, 40, 20, 84), line_height=20 if thumbnails else 6) as table:
        table.row(["#", "along (m)", "across (mm)", "width mm", "length mm", "points", "type", "score", "picture"])
        for d in defects:
            row = table.row()
            for value in (d["id"], f"{d['along_m'][0]:.3f}-{d['along_m'][1]:.3f}",
                          f"{d['across_mm'][0]:.0f}-{d['across_mm'][1]:.0f}", f"{d['width_mm']:.0f}",
                          f"{d['length_mm']:.0f}", d.get("points"), _type_text(d), f"{d['max_score']:.3f}"):
                row.cell(cell_text(value))
            thumb = thumbnails.get(d["id"])
            if thumb is not None:
                row.cell(img=io.BytesIO(png_bytes(thumb)), img_fill_width=False)
            else:
                row.cell("")
    return bytes(pdf.output())


def _type_text(defect: dict) -> str:
    """The label an operator gave, else the predicted type with its confidence."""
    if defect.get("label"):
        return f"{defect['label']} (operator)"
    kind, confidence = defect.get("type") or "", defect.get("type_confidence")
    return f"{kind} {confidence:.2f}" if confidence is not None else kind


def write_report(folder: Path, summary: dict, defects: list[dict], thumbnails: dict[int, np.ndarray] | None = None) -> dict[str, Path]:
    """All formats side by side in `folder` (the service writes them at roll end)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "report.json", "csv": folder / "defects.csv", "pdf": folder / "report.pdf",
             "map": folder / "roll_map.png"}
    paths["json"].write_text(json.dumps({"roll": summary, "defects": defects}, indent=2))
    paths["csv"].write_text(defects_csv(defects))
    paths["pdf"].write_bytes(roll_pdf(summary, defects, thumbnails))
    paths["map"].write_bytes(png_bytes(roll_map(summary, defects)))
    return paths
