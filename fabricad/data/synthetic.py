"""Procedural fabrics with realistic defects and exact masks.

Tests, the demo and onboarding rehearsals need fabric images without shipping any. Each
*fabric* is a fixed construction (weave or knit, yarn pitch, colour); each *image* of it varies
the way camera frames of one roll do (phase of the weave, illumination, yarn irregularity, sensor
noise). Defects are drawn on top with the mask of exactly the pixels they change. Defect strength
is randomised from faint to obvious, so a trained model's AUROC is informative, neither 1.0 nor
chance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm


@dataclass(frozen=True)
class FabricSpec:
    name: str
    construction: str  # "plain", "twill" or "knit"
    pitch: float  # yarn spacing in pixels
    colour: tuple[int, int, int]  # RGB of the yarn
    contrast: float = 0.45
    irregularity: float = 0.08
    backlit: bool = False
    """Lit from behind, as on an inspection table: light shines through the gaps between yarns,
    which clip to white, and a hole shows the lamp (saturated, flat white) instead of the dark
    backing. The hard case for anything that takes flat white for background."""


FABRICS: dict[str, FabricSpec] = {
    "plain": FabricSpec("plain", "plain", 6.0, (196, 176, 150)),
    "twill": FabricSpec("twill", "twill", 5.0, (52, 72, 128)),
    "knit": FabricSpec("knit", "knit", 8.0, (150, 40, 48)),
    "fine-grey": FabricSpec("fine-grey", "plain", 3.5, (140, 140, 140), contrast=0.3),
    "white-backlit": FabricSpec("white-backlit", "plain", 5.0, (255, 255, 255), contrast=0.5, backlit=True),
    # A nonwoven (felt, fleece): fibres laid at random, no weave and no period — the premise of
    # texture alignment does not hold, so the default must notice and do without it.
    "felt": FabricSpec("felt", "nonwoven", 4.0, (120, 130, 110), contrast=0.5),
}

DEFECT_TYPES = ("hole", "stain", "broken_yarn", "missing_yarn", "slub", "knot", "fold", "thick_place")
LARGE_DEFECT_TYPES = ("uneven", "other_density")
"""Defects over a tenth to a quarter of the frame, faint for their size: a region lit 12–30 % off
(`uneven`), and one woven at 1.25–1.5× the pitch (`other_density`). Not among the defaults: what
they measure is how a map covers a large defect (pixel AUROC weighs a defect by its area, the
image score by its strongest pixel), which the small defaults do not ask (docs/experiments.md)."""


def _yarn_profile(phase: np.ndarray) -> np.ndarray:
    """Brightness across a yarn: bright at its crown, dark in the gaps (phase in yarn units)."""
    return 0.5 + 0.5 * np.cos(2 * np.pi * phase)


def render_fabric(spec: FabricSpec, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """One defect-free frame of `spec` as uint8 RGB."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # Yarns wander slightly: low-frequency displacement of both thread systems.
    wobble = spec.irregularity * spec.pitch
    dx = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 12) * wobble * 6
    dy = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 12) * wobble * 6
    u = (xx + dx) / spec.pitch + rng.uniform(0, 1)
    v = (yy + dy) / spec.pitch + rng.uniform(0, 1)
    if spec.construction == "nonwoven":
        # Fibres at random: noise smoothed at two scales, no period in any direction.
        fine = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), spec.pitch / 4)
        coarse = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), spec.pitch)
        noise = fine / max(float(fine.std()), 1e-6) + 0.7 * coarse / max(float(coarse.std()), 1e-6)
        intensity = np.clip(0.5 + 0.22 * noise, 0, 1)
    elif spec.construction == "knit":
        # Columns of interlocking V-shaped loops (wales), alternating direction every course.
        course = np.floor(v)
        slant = np.where(course % 2 == 0, 1.0, -1.0)
        loops = _yarn_profile(u * 2 + slant * (v - course) * 0.8) * _yarn_profile(v * 0.5) ** 0.3
        intensity = loops
    else:
        warp = _yarn_profile(u)
        weft = _yarn_profile(v)
        shift = 1 if spec.construction == "plain" else 2  # twill: the float steps diagonally
        up = ((np.floor(u) + np.floor(v) * (1 if shift == 1 else 1)) % (shift + 1)) == 0
        intensity = np.where(up, warp * (0.6 + 0.4 * weft), weft * (0.6 + 0.4 * warp))
    # Per-yarn thickness/brightness variation and slow illumination falloff.
    yarn_gain = 1.0 if spec.construction == "nonwoven" else 1 + spec.irregularity * rng.normal(0, 1, int(width / spec.pitch) + 3)[np.clip(u.astype(int), 0, None) % (int(width / spec.pitch) + 3)]
    light = 1 + 0.06 * np.sin(xx / width * np.pi * rng.uniform(0.5, 1.5) + rng.uniform(0, 6))
    value = (1 - spec.contrast) + spec.contrast * intensity * yarn_gain
    if spec.backlit:  # yarns block the light, gaps pass it, overexposed so that the gaps clip
        value = 1.1 - spec.contrast * intensity * yarn_gain
    value = value * light
    rgb = np.asarray(spec.colour, dtype=np.float32)[None, None, :] * value[..., None]
    rgb += rng.normal(0, 3.0, rgb.shape).astype(np.float32)  # sensor noise
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _soft_blob(height: int, width: int, rng: np.random.Generator, radius: float) -> np.ndarray:
    """An irregular blob in [0, 1] with soft edges, centred at a random place."""
    cy, cx = rng.uniform(radius, height - radius), rng.uniform(radius, width - radius)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = np.arctan2(yy - cy, xx - cx)
    wobble = 1 + 0.25 * np.sin(3 * angle + rng.uniform(0, 6)) + 0.15 * np.sin(5 * angle + rng.uniform(0, 6))
    dist = np.hypot(yy - cy, xx - cx) / (radius * wobble)
    return np.clip(1.5 - 1.5 * dist, 0, 1)


def _segment(height: int, width: int, rng: np.random.Generator, thickness: int, vertical: bool, length: float):
    """Mask of a straight yarn-aligned strip (bool)."""
    mask = np.zeros((height, width), np.uint8)
    if vertical:
        x = int(rng.uniform(0.1, 0.9) * width)
        y0 = int(rng.uniform(0, 1 - length) * height)
        cv2.rectangle(mask, (x, y0), (x + thickness - 1, y0 + int(length * height)), 1, -1)
    else:
        y = int(rng.uniform(0.1, 0.9) * height)
        x0 = int(rng.uniform(0, 1 - length) * width)
        cv2.rectangle(mask, (x0, y), (x0 + int(length * width), y + thickness - 1), 1, -1)
    return mask.astype(bool)


def _hole(pixels: np.ndarray, spec: FabricSpec, strength: float) -> np.ndarray | float:
    """What a hole shows: the lamp's white on a backlit table, else the dark backing, by strength."""
    return 255.0 if spec.backlit else pixels * (1 - 0.85 * strength) + 10 * strength


def add_defect(
    image: np.ndarray, kind: str, rng: np.random.Generator, spec: FabricSpec, strength: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one defect of `kind`; return (image, bool mask of the changed pixels)."""
    height, width = image.shape[:2]
    # 0.25–0.85: the demo's default model scores image AUROC ≈ 0.87 (it was 1.0 at 0.35–1.0,
    # which told a newcomer nothing about where the model is weak).
    strength = rng.uniform(0.25, 0.85) if strength is None else strength
    out = image.astype(np.float32)
    pitch = max(int(round(spec.pitch)), 2)
    scale = min(height, width)
    if kind == "hole":
        alpha = _soft_blob(height, width, rng, rng.uniform(0.03, 0.08) * scale) > 0.5
        out[alpha] = _hole(out[alpha], spec, strength)
        mask = alpha
    elif kind == "stain":
        alpha = _soft_blob(height, width, rng, rng.uniform(0.05, 0.14) * scale) * strength
        tint = rng.uniform(-80, 40, 3).astype(np.float32)
        out += alpha[..., None] * tint
        mask = alpha > 0.15 * strength
    elif kind in ("broken_yarn", "missing_yarn", "thick_place"):
        vertical = bool(rng.integers(0, 2))
        length = rng.uniform(0.2, 0.6) if kind != "missing_yarn" else 0.98
        thick = pitch * (2 if kind == "thick_place" else 1)
        mask = _segment(height, width, rng, thick, vertical, length)
        if kind == "thick_place":
            out[mask] = out[mask] * (1 + 0.35 * strength) + 10
        else:  # the gap shows the yarns below: darker, with the crossing pattern gone
            mean = out[mask].mean(axis=0)
            out[mask] = out[mask] * (1 - strength) + mean * strength * 0.55
    elif kind == "slub":
        mask = _segment(height, width, rng, max(pitch // 2, 2), bool(rng.integers(0, 2)), rng.uniform(0.05, 0.15))
        mask = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        out[mask] = out[mask] * (1 + 0.3 * strength) + 25 * strength
    elif kind == "knot":
        alpha = _soft_blob(height, width, rng, rng.uniform(0.015, 0.035) * scale)
        mask = alpha > 0.3
        out += (alpha * strength * 70)[..., None]
    elif kind == "fold":
        # A crease: a line across the fabric with a shading ramp on one side.
        mask = np.zeros((height, width), np.uint8)
        p0 = (int(rng.uniform(0, width)), 0)
        p1 = (int(rng.uniform(0, width)), height - 1)
        cv2.line(mask, p0, p1, 1, thickness=max(3, pitch))
        mask = mask.astype(bool)
        shade = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), pitch)
        shade = shade / max(shade.max(), 1e-6)
        out *= (1 - 0.45 * strength * shade)[..., None]
        mask = shade > 0.25
    elif kind in LARGE_DEFECT_TYPES:
        alpha = _soft_blob(height, width, rng, rng.uniform(0.2, 0.35) * scale)
        if kind == "uneven":
            gain = rng.choice([-1.0, 1.0]) * (0.12 + 0.18 * (strength - 0.25) / 0.6)
            out *= (1 + gain * alpha)[..., None]
            mask = alpha > 0.3
        else:
            denser = replace(spec, pitch=spec.pitch * rng.uniform(1.25, 1.5))
            blend = np.clip(alpha * 2, 0, 1)[..., None]
            out = out * (1 - blend) + render_fabric(denser, height, width, rng).astype(np.float32) * blend
            mask = alpha > 0.25
    else:
        raise ValueError(f"unknown defect type {kind!r}; known: {', '.join(DEFECT_TYPES + LARGE_DEFECT_TYPES)}")
    return np.clip(out, 0, 255).astype(np.uint8), mask


def another_lot(image: np.ndarray, rng: np.random.Generator, tint: tuple[float, float, float] = (0.85, 0.95, 1.15)) -> np.ndarray:
    """Good cloth of another dye lot: a band across the frame (a quarter of its height, at a random
    place in its upper half) whose colour is shifted by `tint`. A mill accepts it; a model trained
    on one lot alone raises it as a defect. What the operators' feedback loop learns
    (`fabricad finetune`, tests and benchmarks)."""
    height = image.shape[0]
    top = int(rng.integers(0, max(height // 2, 1)))
    out = image.astype(np.float32)
    out[top:top + max(height // 4, 1)] *= np.asarray(tint, np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Scene:
    """How photographs of a surface differ from one another where they are not a line scan: a
    folder of crops of any size and aspect (each side drawn in `sides`), lit unevenly (a linear
    gradient of up to `gradient` either way), darker towards the corners (`vignette`), and some
    (`background` of them) showing a flat table beside the material. What a new user's folder of
    texture photos looks like; the AITEX-tuned heuristics must cope with it."""

    sides: tuple[int, int] = (239, 400)
    gradient: float = 0.25
    vignette: float = 0.3
    background: float = 0.3

    def size(self, rng: np.random.Generator) -> tuple[int, int]:
        low, high = self.sides
        return int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1))

    def photograph(self, image: np.ndarray, rng: np.random.Generator, defect: np.ndarray | None = None) -> np.ndarray:
        """`image` lit and framed like a photo; the table is left out where it would cover the
        `defect` mask, so every defective image shows its defect (its mask stays exact)."""
        height, width = image.shape[:2]
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = ((xx / width - 0.5) * np.cos(angle) + (yy / height - 0.5) * np.sin(angle)) * 2
        light = 1 + rng.uniform(-self.gradient, self.gradient) * ramp
        corner = ((xx / width - 0.5) ** 2 + (yy / height - 0.5) ** 2) * 2  # 0 centre, 1 corners
        light *= 1 - self.vignette * rng.uniform(0.3, 1.0) * corner
        out = np.clip(image.astype(np.float32) * light[..., None], 0, 255).astype(np.uint8)
        if rng.uniform() < self.background:  # the table beside the material, along one side
            side, share = int(rng.integers(0, 4)), rng.uniform(0.08, 0.25)
            table = np.zeros((height, width), bool)
            if side < 2:
                cut = max(1, int(share * width))
                table[:, :cut] = True
            else:
                cut = max(1, int(share * height))
                table[:cut, :] = True
            table = table if side % 2 == 0 else table[::-1, ::-1]
            if defect is None or not (defect & table).any():  # never hide a defect under the table
                out[table] = np.uint8(rng.integers(8, 40))
        return out


def _write_rgb(path: Path, image: np.ndarray, grayscale: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2GRAY if grayscale else cv2.COLOR_RGB2BGR))


def generate_category(
    root: Path,
    fabric: str = "plain",
    *,
    size: tuple[int, int] = (256, 256),
    n_train: int = 40,
    n_test_good: int = 10,
    n_test_defect: int = 20,
    defect_types: tuple[str, ...] = DEFECT_TYPES,
    seed: int = 0,
    grayscale: bool = False,
    progress: bool = True,
    scene: Scene | None = None,
) -> Path:
    """Write one MVTec-layout category `root/<fabric>` and return its path; `grayscale` writes
    single-channel images, as a monochrome line-scan camera gives. With a `scene`, every image is
    a photograph of its own size (`size` is then unused), lit and framed as `Scene` says."""
    if fabric not in FABRICS:
        raise ValueError(f"unknown fabric {fabric!r}; known: {', '.join(FABRICS)}")
    spec = FABRICS[fabric]
    rng = np.random.default_rng(seed)
    folder = Path(root) / fabric
    height, width = size
    jobs: list[tuple[str, Callable[[], None]]] = []

    def shape() -> tuple[int, int]:
        return scene.size(rng) if scene is not None else (height, width)

    def normal(path: Path) -> None:
        image = render_fabric(spec, *shape(), rng)
        _write_rgb(path, scene.photograph(image, rng) if scene is not None else image, grayscale)

    for i in range(n_train):
        jobs.append(("train", lambda i=i: normal(folder / "train" / "good" / f"{i:03d}.png")))
    for i in range(n_test_good):
        jobs.append(("test", lambda i=i: normal(folder / "test" / "good" / f"{i:03d}.png")))
    for i in range(n_test_defect):
        kind = defect_types[i % len(defect_types)]

        def defective(i: int = i, kind: str = kind) -> None:
            image, mask = add_defect(render_fabric(spec, *shape(), rng), kind, rng, spec)
            if scene is not None:
                image = scene.photograph(image, rng, mask)
            _write_rgb(folder / "test" / kind / f"{i:03d}.png", image, grayscale)
            mask_path = folder / "ground_truth" / kind / f"{i:03d}_mask.png"
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(mask_path), mask.astype(np.uint8) * 255)

        jobs.append(("defect", defective))
    for _, job in tqdm(jobs, desc=f"generating {fabric}", unit="img", disable=not progress):
        job()
    return folder


@dataclass(frozen=True)
class PlacedDefect:
    """A defect drawn inside a chosen box of a long strip: `x`, `y` (top-left), `width`, `height` px.
    Linear kinds fill the box as one yarn fault along its longer side; blob kinds sit inside it."""

    kind: str
    x: int
    y: int
    width: int
    height: int


LINEAR_KINDS = ("broken_yarn", "missing_yarn", "thick_place", "slub")


def render_roll(
    fabric: str, width: int, length: int, defects: list[PlacedDefect], seed: int = 0, strength: float = 1.0
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A long strip of fabric (rows run along the roll) with defects at known places; returns the
    image and each defect's true box (x, y, width, height) taken from the pixels it changed."""
    spec = FABRICS[fabric]
    rng = np.random.default_rng(seed)
    image = render_fabric(spec, length, width, rng)
    boxes = []
    for d in defects:
        crop = image[d.y:d.y + d.height, d.x:d.x + d.width]
        if d.kind in LINEAR_KINDS:
            out = crop.astype(np.float32)
            mask = np.zeros(crop.shape[:2], bool)
            thick = max(int(round(spec.pitch)), 2) * (2 if d.kind == "thick_place" else 1)
            if d.height >= d.width:
                mask[:, (d.width - thick) // 2:(d.width + thick) // 2] = True
            else:
                mask[(d.height - thick) // 2:(d.height + thick) // 2, :] = True
            if d.kind in ("thick_place", "slub"):
                out[mask] = out[mask] * (1 + 0.35 * strength) + 20
            else:
                out[mask] = out[mask] * (1 - strength) + out[mask].mean(axis=0) * strength * 0.55
            crop[:] = np.clip(out, 0, 255).astype(np.uint8)
        else:  # a blob that fills its box (a hole, stain or knot of the box's size)
            yy, xx = np.mgrid[0:d.height, 0:d.width].astype(np.float32)
            dist = np.hypot((yy - (d.height - 1) / 2) / (d.height / 2), (xx - (d.width - 1) / 2) / (d.width / 2))
            mask = dist <= 1
            out = crop.astype(np.float32)
            if d.kind == "hole":
                out[mask] = _hole(out[mask], spec, strength)
            else:
                out[mask] = out[mask] + np.asarray([-70, -50, 30], np.float32) * strength
            crop[:] = np.clip(out, 0, 255).astype(np.uint8)
        ys, xs = np.nonzero(mask)
        boxes.append((d.x + int(xs.min()), d.y + int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)))
    return image, boxes


def write_frames(folder: Path, strip: np.ndarray, frame_height: int) -> list[Path]:
    """Cut a strip into consecutive frames (what a camera over the moving roll sees)."""
    paths = []
    for i, top in enumerate(range(0, strip.shape[0] - frame_height + 1, frame_height)):
        paths.append(folder / f"frame_{i:05d}.png")
        _write_rgb(paths[-1], strip[top:top + frame_height])
    return paths
