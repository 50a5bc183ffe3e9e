"""`fabricad demo`: a newcomer's first ten minutes, with no data and no network.

data → train → evaluate → export → service with the dashboard and a simulated camera, on which
simulated rolls run one after another (start, frames placed by the line speed, end after
`roll_length_m`), so the Rolls page shows a roll map, a 4-point grade and the PDF within minutes.
Each step leaves its result in the work folder and is skipped when that result is already there,
so a second run starts the service in seconds.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2

from fabricad.errors import FabricadError

CAMERA_ID = "demo-line"
DEMO_USER = "admin"
MM_PER_PX = 0.5
"""The simulated camera's resolution on the fabric: a 256 px frame shows 128 mm × 128 mm."""


@dataclass
class DemoPlan:
    workdir: Path
    max_steps: int = 300
    train_images: int = 30
    image_size: int = 128
    fabric: str = "plain"
    category: str | None = None
    """With FABRICAD_DATA: the category of that dataset (an AITEX fabric code, an MVTec category)."""

    @property
    def model_dir(self) -> Path:
        return self.workdir / "model"

    @property
    def models_dir(self) -> Path:
        return self.workdir / "models"

    @property
    def media_dir(self) -> Path:
        return self.workdir / "media"


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def prepare_data(plan: DemoPlan) -> tuple[Path, str | None]:
    """The dataset: FABRICAD_DATA when set (AITEX or any supported layout), else a synthetic fabric."""
    external = os.environ.get("FABRICAD_DATA")
    if external:
        from fabricad.data import load_dataset

        root = Path(external)
        category = plan.category
        if category is None and (root / "NODefect_images").is_dir():
            category = "00"  # AITEX: the first fabric code
        load_dataset(root, category)  # fails now, with the reason, rather than after training
        _say(f"data: {root}{f' (category {category})' if category else ''} from FABRICAD_DATA")
        return root, category
    from fabricad.data.synthetic import generate_category

    category_dir = plan.workdir / "data" / plan.fabric
    if (category_dir / "train" / "good").is_dir():
        _say(f"data: reusing {category_dir}")
    else:
        _say(f"data: generating a synthetic '{plan.fabric}' fabric in {category_dir}")
        generate_category(plan.workdir / "data", plan.fabric, size=(256, 256), n_train=plan.train_images,
                          n_test_good=8, n_test_defect=16)
    return category_dir, None


def _newer_than_model(plan: DemoPlan, path: Path) -> bool:
    """An output of an earlier run is reused only if it was made from the current model."""
    return path.is_file() and path.stat().st_mtime >= (plan.model_dir / "model.ckpt").stat().st_mtime


def train_model(plan: DemoPlan, data: Path, category: str | None) -> Path:
    from fabricad.config import FabricadConfig
    from fabricad.training import train

    if (plan.model_dir / "model.ckpt").is_file():
        _say(f"model: reusing {plan.model_dir / 'model.ckpt'}")
        return plan.model_dir
    overrides = [f"data.path={data}", f"train.max_steps={plan.max_steps}", f"data.image_size={plan.image_size}"]
    if category:
        overrides.append(f"data.category={category}")
    _say(f"model: training the default model ({plan.max_steps} steps at {plan.image_size} px) into {plan.model_dir}")
    train(FabricadConfig().with_overrides(overrides), plan.model_dir)
    return plan.model_dir


def evaluate_model(plan: DemoPlan) -> None:
    from fabricad.evaluation import evaluate_checkpoint, format_metrics

    out = plan.workdir / "eval"
    if _newer_than_model(plan, out / "metrics.json"):
        _say(f"evaluation: reusing {out / 'metrics.json'}")
        import json

        result = json.loads((out / "metrics.json").read_text())
    else:
        _say("evaluation: test split")
        result = evaluate_checkpoint(plan.model_dir, out)
    print(format_metrics(result), flush=True)
    _say(f"report: {out / 'report.md'}")


def export_model(plan: DemoPlan, name: str) -> Path:
    from fabricad.export.onnx_export import export_checkpoint

    bundle = plan.models_dir / name
    if _newer_than_model(plan, bundle / "model.json"):
        _say(f"export: reusing {bundle}")
        return bundle
    _say(f"export: ONNX bundle {bundle}")
    # with its checkpoint: the dashboard can then retrain it from the false alarms operators label
    return export_checkpoint(plan.model_dir, bundle, name=name, with_checkpoint=True)


def camera_frames(plan: DemoPlan, data: Path, category: str | None) -> Path:
    """The simulated camera's film: the test images, normal and defective interleaved."""
    from fabricad.data import load_dataset

    folder = plan.media_dir / CAMERA_ID
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    test = load_dataset(data, category).test
    normal = [s for s in test if s.label == 0]
    defective = [s for s in test if s.label == 1]
    if not normal and not defective:
        raise FabricadError(f"{data}: no test images to play on the simulated camera")
    order = []
    while normal or defective:  # three normal frames, then a defective one
        order += [normal.pop(0) for _ in range(min(3, len(normal)))]
        if defective:
            order.append(defective.pop(0))
    for i, sample in enumerate(order[:60]):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(sample.load(), cv2.COLOR_RGB2BGR))
    return folder


def _secret(path: Path) -> tuple[str, bool]:
    """A secret made once and kept in the work folder (readable by its owner only); whether it is new."""
    if path.is_file():
        return path.read_text().strip(), False
    secret = secrets.token_urlsafe(18)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret, True


def api_key(plan: DemoPlan) -> str:
    """The demo's admin API key, for the simulated line controller (a machine) and for scripts."""
    return _secret(plan.workdir / "api-key.txt")[0]


def admin_user(plan: DemoPlan, database_url: str) -> str:
    """The demo's admin user (`admin`), for people at the dashboard; its password, made once."""
    from fabricad.service.accounts import Accounts
    from fabricad.service.database import Database

    password, new = _secret(plan.workdir / "admin-password.txt")
    database = Database(database_url)
    try:
        accounts = Accounts(database)
        try:
            if new:  # the password file was removed: the user gets the new one
                accounts.update(DEMO_USER, password=password, disabled=False)
            else:
                accounts.get(DEMO_USER)
        except KeyError:  # a first run, or a removed database
            accounts.add(DEMO_USER, "admin", password)
    finally:
        database.dispose()
    return password


def service_settings(plan: DemoPlan, name: str, key: str, fps: float):
    from fabricad.service.cameras import CameraSpec
    from fabricad.service.settings import load_settings

    return load_settings(
        models_dir=plan.models_dir, active_model=name, database_url=f"sqlite:///{plan.workdir / 'fabricad.db'}",
        image_store=plan.workdir / "defect-images", report_dir=plan.workdir / "roll-reports", media_dir=plan.media_dir,
        api_keys={key: "admin"}, cameras=[CameraSpec(id=CAMERA_ID, source=f"media:{CAMERA_ID}", fps=fps)],
    )


def simulate_rolls(url: str, key: str, fps: float, frame_px: tuple[int, int], length_m: float,
                   stopping: threading.Event) -> None:
    """Rolls on the simulated camera, one after another, through the REST API as a line's
    controller would drive them. The line speed is what the camera's frames cover at `fps`
    (frame height × mm/px × fps), so the roll is inspected end to end, without gaps."""
    import httpx

    headers = {"X-API-Key": key}
    height, width = frame_px
    speed = fps * height * MM_PER_PX / 1000 * 60
    while not stopping.is_set():
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        stopping.wait(0.5)
    while not stopping.is_set():
        roll_id = f"DEMO-{time.strftime('%Y%m%d-%H%M%S')}"
        spec = {"id": roll_id, "article": "demo plain weave", "width_mm": width * MM_PER_PX, "speed_m_per_min": speed,
                "cameras": [{"camera_id": CAMERA_ID, "offset_mm": 0, "mm_per_px": MM_PER_PX}]}
        try:
            httpx.post(f"{url}/v1/rolls", json=spec, headers=headers, timeout=10).raise_for_status()
            _say(f"roll {roll_id}: started, {length_m:g} m at {speed:.1f} m/min — see the Rolls page")
            if stopping.wait(length_m / speed * 60 + 1.0):  # the roll's start waits a moment for its cameras
                break
            ended = httpx.post(f"{url}/v1/rolls/{roll_id}/end", json={}, headers=headers, timeout=30).json()
            grade = ended.get("grade") or {}
            _say(f"roll {roll_id}: ended at {ended.get('length_m', 0):.1f} m, {grade.get('points', 0)} points, "
                 f"{'passed' if grade.get('passed') else 'failed'}; report: {url}/v1/rolls/{roll_id}/report.pdf")
        except httpx.HTTPError as exc:  # the service is stopping, or refused: say so and try again later
            if not stopping.is_set():
                _say(f"simulated roll: {exc}")
                stopping.wait(5)


def run_demo(plan: DemoPlan, serve: bool = True, host: str = "127.0.0.1", port: int = 8000, fps: float = 2.0,
             roll_length_m: float = 10.0) -> None:
    plan.workdir.mkdir(parents=True, exist_ok=True)
    data, category = prepare_data(plan)
    train_model(plan, data, category)
    evaluate_model(plan)
    name = "demo-" + (category or plan.fabric)
    export_model(plan, name)
    film = camera_frames(plan, data, category)
    if not serve:
        _say("done (--no-serve): start the service with `fabricad serve --models "
             f"{plan.models_dir}` or run the demo again without --no-serve")
        return
    import uvicorn

    from fabricad.service.app import create_app

    key = api_key(plan)
    settings = service_settings(plan, name, key, fps)
    password = admin_user(plan, settings.database_url)
    shown = "localhost" if host in ("0.0.0.0", "127.0.0.1") else host
    _say(f"dashboard: http://{shown}:{port}/   sign in as {DEMO_USER} / {password} (also in {plan.workdir / 'admin-password.txt'})")
    _say(f"API key for scripts (admin): {key} (in {plan.workdir / 'api-key.txt'})")
    _say(f"API docs:  http://{shown}:{port}/docs   · Ctrl+C stops the service")
    stopping = threading.Event()
    if roll_length_m > 0:
        first = cv2.imread(str(next(iter(sorted(film.iterdir())))), cv2.IMREAD_UNCHANGED)
        local = f"http://127.0.0.1:{port}" if host in ("0.0.0.0", "127.0.0.1", "localhost") else f"http://{host}:{port}"
        threading.Thread(target=simulate_rolls, args=(local, key, fps, first.shape[:2], roll_length_m, stopping),
                         name="demo-rolls", daemon=True).start()
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning",
                    timeout_graceful_shutdown=10)
    finally:
        stopping.set()
    _say("service stopped")
