"""The `fabricad` command line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fabricad import __version__
from fabricad.errors import FabricadError, missing_extra, require_module

app = typer.Typer(
    help="fabricad: train, evaluate and run fabric defect detectors (reverse distillation).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Category folder (MVTec layout) or dataset root with --category.")]
CategoryOpt = Annotated[Optional[str], typer.Option("--category", help="Category inside a dataset root.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fabricad {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def train(
    data: DataOpt = None,
    category: CategoryOpt = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML configuration file.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder for model.ckpt and config.yaml.")] = Path("runs/train"),
    model: Annotated[Optional[str], typer.Option("--model", help="Model family: rd or dbfad.")] = None,
    teacher: Annotated[Optional[str], typer.Option("--teacher", help="timm teacher name: tf_efficientnet_lite1 (default), tf_efficientnet_lite0 (lighter), resnet34 ...")] = None,
    teacher_weights: Annotated[Optional[str], typer.Option("--teacher-weights", help="auto, packaged, hub, random or a .pth/.safetensors path.")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Maximum epochs.")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Stop after this many optimiser steps.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="Square network input size (multiple of 32); smaller training images keep their own size unless --set data.upscale=true.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda, cuda:1 ...")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue from this checkpoint.")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Any config value: --set train.lr=0.001 (repeatable).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a model on normal images of one fabric; writes OUT/model.ckpt and OUT/config.yaml."""
    from fabricad.config import FabricadConfig
    from fabricad.training import read_checkpoint
    from fabricad.training import train as run_training

    if config is not None:
        cfg = FabricadConfig.from_yaml(config)
    elif resume is not None:
        cfg = read_checkpoint(resume).config
    else:
        cfg = FabricadConfig()
    flags = {
        "data.path": str(data) if data else None,
        "data.category": category,
        "model.name": model,
        "model.teacher.name": teacher,
        "model.teacher.weights": teacher_weights,
        "train.epochs": epochs,
        "train.max_steps": max_steps,
        "train.batch_size": batch_size,
        "data.image_size": image_size,
        "train.device": device,
    }
    items = [f"{k}={v}" for k, v in flags.items() if v is not None] + list(overrides or [])
    cfg = cfg.with_overrides(items)
    result = run_training(cfg, out, resume=resume, progress=not quiet)
    typer.echo(
        f"trained {result.epochs} epochs ({result.steps} steps) at {result.image_size[1]}x{result.image_size[0]} px "
        f"in {result.seconds:.0f} s, "
        f"best held-out loss {result.best_loss:.4f}{' (early stop)' if result.stopped_early else ''}\n"
        f"checkpoint: {result.checkpoint}"
    )


@app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="model.ckpt (or its folder).")],
    data: DataOpt = None,
    category: CategoryOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for metrics.json, report.md and pictures.")] = Path("runs/eval"),
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda ...")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Inference settings, e.g. model.fabric_roi=false.")] = None,
    line: Annotated[bool, typer.Option("--line", help="Also the line benchmark: false alarms per 100 m, defect "
                                                      "recall and grades on rolls simulated from the test scans.")] = False,
    mm_per_px: Annotated[float, typer.Option("--mm-per-px", min=0.001, max=100, help="Fabric mm per scan pixel (--line).")] = 0.25,
    rolls: Annotated[int, typer.Option("--rolls", min=1, max=10_000, help="Simulated rolls (--line).")] = 20,
    roll_length_m: Annotated[float, typer.Option("--roll-length-m", min=0.01, max=10_000, help="Metres per roll (--line).")] = 25.0,
    selvedge_mm: Annotated[float, typer.Option("--selvedge-mm", min=0, max=10_000, help="The selvedge band measured beside "
                                               "each fabric edge (--line; 0: not measured).")] = 25.0,
) -> None:
    """Evaluate a checkpoint on a test split; writes OUT/metrics.json, OUT/report.md and pictures.

    Without --data, the dataset the model was trained on is used."""
    from fabricad.evaluation import evaluate_checkpoint, format_metrics
    from fabricad.evaluation.line import LineSettings, line_table

    settings = LineSettings(mm_per_px=mm_per_px, rolls=rolls, roll_length_m=roll_length_m,
                            selvedge_mm=selvedge_mm) if line else None
    result = evaluate_checkpoint(model, out, data, category, batch_size, device, progress=not quiet, overrides=overrides,
                                 line=settings)
    typer.echo(format_metrics(result))
    if "line" in result:
        typer.echo("\n".join(line_table(result["line"])))
    typer.echo(f"report: {out / 'report.md'}")


@app.command("train-types")
def train_types(
    bundle: Annotated[Path, typer.Option("--bundle", help="Bundle folder to write defect_types.json into.")],
    data: DataOpt = None,
    categories: Annotated[Optional[list[str]], typer.Option("--category", help="Category inside a dataset root; repeat it to "
                                                            "pool several (defect types span fabrics).")] = None,
    unknown_below: Annotated[Optional[float], typer.Option("--unknown-below", min=0, max=1, help="Answer `unknown` below "
                                                           "this probability (default: the bundle's, else 0.5).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Teach a bundle defect types from a dataset that names them (AITEX's defect codes, MVTec-style
    test/<type>/ folders with masks); validates leave-one-image-out and prints the figures.

    The operators' labels the service gathered stay in the classifier; examples from the same
    dataset replace their earlier copies."""
    from fabricad.data import load_dataset
    from fabricad.defect_types.examples import dataset_examples
    from fabricad.defect_types.fit import refit
    from fabricad.inference.bundle import is_bundle

    if data is None:
        raise FabricadError("give --data: a dataset whose defects carry types")
    if not is_bundle(bundle):
        raise FabricadError(f"{bundle} is not an exported bundle (fabricad export writes one)")
    examples, sources = [], set()
    for category in categories or [None]:
        split = load_dataset(data, category)
        examples += dataset_examples(split, progress=not quiet)
        sources.add(split.name)
    model, figures = refit(bundle, examples, sources, unknown_below, progress=not quiet)
    typer.echo(f"defect types: {', '.join(f'{k} ({v})' for k, v in sorted(model.counts.items()))}")
    if figures:
        ours, rules = figures["classifier"], figures["geometry_rules"]
        typer.echo(f"leave-one-image-out over {figures['images']} images: accuracy {ours['accuracy']:.2f}, macro-F1 "
                   f"{ours['macro_f1']:.2f} (geometry rules: {rules['accuracy']:.2f}, {rules['macro_f1']:.2f})")
    typer.echo(f"written: {bundle / 'defect_types.json'}")


@app.command()
def finetune(
    bundle: Annotated[Path, typer.Option("--bundle", help="The bundle in use (exported --with-checkpoint).")],
    false_alarms: Annotated[list[Path], typer.Option("--false-alarms", help="Frames labelled false alarms: images or "
                                                     "folders (repeatable); learnt as normal fabric.")],
    out: Annotated[Path, typer.Option("--out", help="Job folder: the fine-tune's checkpoint (run/) and the candidate (bundle/).")],
    defects: Annotated[Optional[list[Path]], typer.Option("--defects", help="Frames confirmed as defects (repeatable): the "
                                                          "candidate must still catch them.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="The model's training images, where they are not at the "
                                                 "path its checkpoint names.")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, max=100_000, help="Fine-tune steps.")] = 200,
    max_minutes: Annotated[float, typer.Option("--max-minutes", min=0.1, help="Time budget of the fine-tune.")] = 10.0,
    status: Annotated[Optional[Path], typer.Option("--status", help="Write progress and the result to this JSON file "
                                                   "(the service reads it).")] = None,
    job: Annotated[Optional[str], typer.Option("--job", help="The job's name in the status file (default: OUT's name).")] = None,
    nice: Annotated[int, typer.Option("--nice", min=0, max=19, help="Lower this process's CPU priority by this much "
                                      "(the service's jobs: 10, so cameras keep theirs).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Fine-tune a bundle's model on frames labelled false alarms and export a candidate bundle
    (OUT/bundle), judged against BUNDLE on the held-out images, the labelled frames and the
    dataset's test images: it is offered only if it is not worse."""
    import os

    from fabricad.data.images import IMAGE_EXTENSIONS
    from fabricad.export.candidate import retrain_candidate

    def images(items: list[Path]) -> list[Path]:
        found = []
        for item in items:
            if not item.exists():
                raise FabricadError(f"not found: {item}")
            found += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS) if item.is_dir() else [item]
        return found

    frames = images(false_alarms)
    if not frames:
        raise FabricadError(f"no images in {', '.join(map(str, false_alarms))}: give the frames labelled false alarms")
    if nice:
        os.nice(nice)
    result = retrain_candidate(bundle, frames, out, defects=images(defects or []), data=data, steps=steps,
                               max_minutes=max_minutes, status_file=status, job=job, progress=not quiet)
    for row in result.comparison:
        typer.echo(f"{row.change()} on {row.images} images [{row.verdict}]")
    offered = "offered for activation" if result.offered else "not offered: " + "; ".join(result.reasons)
    typer.echo(f"candidate: {out / 'bundle'} ({result.verdict}, {offered})")


@app.command()
def export(
    model: Annotated[Path, typer.Option("--model", help="model.ckpt (or its folder).")],
    format: Annotated[str, typer.Option("--format", help="onnx, tensorrt, openvino (an OpenVINO IR; its int8 through NNCF), "
                                        "or triton (OUT is then a Triton model repository).")] = "onnx",
    precision: Annotated[str, typer.Option("--precision", help="fp32, fp16 (GPUs) or int8 (CPUs, calibrated on normal images).")] = "fp32",
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to write (model.onnx + model.json).")] = Path("runs/bundle"),
    data: DataOpt = None,
    category: CategoryOpt = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Model name shown by the service (default: folder name).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Inference settings, e.g. model.fabric_roi=false.")] = None,
    with_checkpoint: Annotated[bool, typer.Option("--with-checkpoint", help="Carry the training checkpoint in the bundle, "
                                                  "so the service can retrain it from the operators' false-alarm labels.")] = False,
) -> None:
    """Export a checkpoint to a deployable bundle: ONNX (fp32/fp16/int8), optionally a TensorRT engine."""
    from fabricad.export.onnx_export import export_checkpoint
    from fabricad.export.tensorrt import build_engine, require_tensorrt

    if format not in ("onnx", "tensorrt", "triton", "openvino"):
        raise FabricadError(f"unknown format {format!r}: use onnx, tensorrt, openvino or triton")
    if format == "openvino":
        from fabricad.export.openvino_export import export_openvino

        bundle = export_openvino(model, out, precision=precision, data=data, category=category, name=name,
                                 progress=not quiet, overrides=overrides, with_checkpoint=with_checkpoint)
        typer.echo(f"bundle: {bundle} (OpenVINO IR, {precision})")
        return
    if format == "tensorrt":
        require_tensorrt()  # before any work: say now, not after the export, that it cannot be done
    if format == "triton":
        import shutil

        from fabricad.export.triton import write_repository

        model_name = name or Path(model).resolve().with_suffix("").name
        if model_name == "model":  # `--model runs/x/model.ckpt`: name it after the run folder
            model_name = Path(model).resolve().parent.name
        version = out / model_name / "1"
        bundle = export_checkpoint(model, version, precision=precision, data=data, category=category, name=model_name,
                                   progress=not quiet, overrides=overrides)
        plan = None
        if shutil.which("trtexec"):  # a TensorRT plan when NVIDIA's tools are here; ONNX otherwise
            plan = build_engine(bundle, fp16=precision != "fp32", route="trtexec")
        folder = write_repository(bundle, out, model_name, plan=plan)
        typer.echo(f"triton model repository: {out} (model {model_name}: {folder / 'config.pbtxt'})")
        return
    bundle = export_checkpoint(model, out, precision=precision, data=data, category=category, name=name,
                               progress=not quiet, overrides=overrides, with_checkpoint=with_checkpoint)
    typer.echo(f"bundle: {bundle}")
    if format == "tensorrt":
        typer.echo(f"tensorrt engine: {build_engine(bundle, fp16=precision != 'fp32')}")


@app.command()
def predict(
    inputs: Annotated[list[Path], typer.Argument(help="Images, folders of images, or video files.")],
    model: Annotated[Path, typer.Option("--model", help="Bundle folder (ONNX Runtime) or model.ckpt (PyTorch).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for overlays, results.json and results.csv.")] = Path("runs/predict"),
    backend: Annotated[str, typer.Option("--backend", help="auto, onnx (ONNX Runtime), openvino or torch.")] = "auto",
    provider: Annotated[Optional[list[str]], typer.Option("--provider", help="ONNX Runtime provider(s): tensorrt, cuda, cpu; "
                                                          "with --backend openvino, the device: CPU, GPU, NPU, AUTO.")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Override the bundle's threshold.")] = None,
    every: Annotated[int, typer.Option("--every", help="Videos: inspect every Nth frame.")] = 1,
    threads: Annotated[Optional[int], typer.Option("--threads")] = None,
    align: Annotated[bool, typer.Option("--align/--no-align", help="Score a scan whose weave is sheared, mirrored or squeezed "
                                        "against the training scans' turned back to them (models with a texture reference).")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Inspect images or videos; writes overlays (heatmap + red defect contours) and JSON/CSV results.

    A file that cannot be read is reported and skipped; the rest of the batch goes on."""
    from fabricad.inference.bundle import is_bundle
    from fabricad.inference.engine import InferenceEngine
    from fabricad.inference.predict import run_predict

    if backend == "torch" or (backend == "auto" and not is_bundle(model)):
        require_module("torch")  # a checkpoint runs on PyTorch; a line PC without it runs bundles
        from fabricad.training.torch_backend import load_engine

        engine = load_engine(model, backend="torch", threads=threads, align=align)
    else:
        openvino = backend == "openvino"  # --provider names its device
        engine = InferenceEngine.load(model, backend=backend, providers=None if openvino else provider, threads=threads,
                                      align=align, device=provider[0] if openvino and provider else "CPU")
    if threshold is not None:
        engine.set_threshold(threshold)
    summary = run_predict(engine, inputs, out, every=every, progress=not quiet)
    typer.echo(
        f"{summary['inspected']} inspected, {summary['defects']} defective, "
        + (f"{summary['no_fabric']} with no fabric in view (OK says nothing about them), " if summary["no_fabric"] else "")
        + f"{summary['failed']} unreadable "
        f"({engine.description['backend']}); results: {out / 'results.json'}"
    )
    for failure in summary["failures"][:10]:
        typer.secho(f"skipped {failure}", fg=typer.colors.YELLOW, err=True)
    if not summary["inspected"]:
        raise FabricadError("nothing was inspected: " + (f"none of the {summary['failed']} file(s) could be read"
                            if summary["failed"] else "no images or videos found in " + ", ".join(map(str, inputs))))


ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="The service's YAML settings file (FABRICAD_* variables override it).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


@app.command()
def serve(
    models: Annotated[Optional[Path], typer.Option("--models", help="Folder of exported bundles (default: FABRICAD_MODELS_DIR or ./models).")] = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    config: ConfigOpt = None,
    ssl_certfile: Annotated[Optional[Path], typer.Option("--ssl-certfile", help="Serve HTTPS with this certificate (PEM).")] = None,
    ssl_keyfile: Annotated[Optional[Path], typer.Option("--ssl-keyfile", help="The certificate's private key (PEM).")] = None,
) -> None:
    """Run the inspection service (REST API) on HOST:PORT; HTTPS with --ssl-certfile/--ssl-keyfile."""
    import uvicorn

    from fabricad.service.app import create_app

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise FabricadError("HTTPS needs both --ssl-certfile and --ssl-keyfile")
    for path in (ssl_certfile, ssl_keyfile):
        if path is not None and not path.is_file():
            raise FabricadError(f"not found: {path}")
    tls = {"ssl_certfile": str(ssl_certfile), "ssl_keyfile": str(ssl_keyfile)} if ssl_certfile else {}

    settings = _service_settings(config, **({"models_dir": models} if models is not None else {}))
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", timeout_graceful_shutdown=10, **tls)




def _service_settings(config: Optional[Path], **values):
    """The service's settings as `serve` reads them: the YAML file, then FABRICAD_* variables."""
    import os

    from fabricad.service.settings import load_settings

    if config is not None:
        if not config.is_file():
            raise FabricadError(f"settings file not found: {config}")
        os.environ["FABRICAD_CONFIG"] = str(config)
    return load_settings(**values)


@app.command()
def backup(
    out: Annotated[Path, typer.Option("--out", help="The archive to write (.tar.gz).")],
    config: ConfigOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Back up the service's database, defect images and roll reports, consistently, while it runs."""
    from fabricad.service.backup import backup as take

    manifest = take(_service_settings(config), out, progress=not quiet)
    typer.echo(f"backup: {out} ({manifest['defects']} defects up to #{manifest['last_defect_id']}, {manifest['rolls']} rolls, "
               f"{manifest['files'].get('images', 0)} images, schema {manifest['schema']})")


@app.command()
def restore(
    archive: Annotated[Path, typer.Argument(help="An archive from `fabricad backup`.")],
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a database that already holds defects or rolls.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Restore a backup into the service's settings (stop the service first); older archives are migrated."""
    from fabricad.service.backup import restore as put_back

    if not archive.is_file():
        raise FabricadError(f"no backup at {archive}")
    manifest = put_back(_service_settings(config), archive, force=force, progress=not quiet)
    typer.echo(f"restored: {manifest['defects']} defects, {manifest['rolls']} rolls from {archive}")


users_app = typer.Typer(help="Named user accounts (people at the dashboard); machines use API keys.", no_args_is_help=True)
app.add_typer(users_app, name="users")
RoleOpt = Annotated[str, typer.Option("--role", help="operator (acknowledge defects, run rolls) or admin (also models, thresholds, cameras, users).")]
PasswordStdinOpt = Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input (scripts) instead of asking.")]


def _accounts(config: Optional[Path]):
    """The service's accounts and audit log, in the database its settings name."""
    from fabricad.service.accounts import Accounts
    from fabricad.service.audit import AuditLog
    from fabricad.service.database import Database

    database = Database(_service_settings(config).database_url)
    return Accounts(database), AuditLog(database)


def _new_password(from_stdin: bool) -> str:
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        raise FabricadError("the two passwords differ")
    return password


def _cli_actor():
    import getpass

    from fabricad.service.audit import Actor

    return Actor.of_cli(getpass.getuser())


@users_app.command("add")
def users_add(name: Annotated[str, typer.Argument(help="The user's name (letters, digits, . _ @ -).")],
              role: RoleOpt = "operator", password_stdin: PasswordStdinOpt = False, config: ConfigOpt = None) -> None:
    """Add a user; the password is asked for (twice) and only its hash is kept."""
    accounts, audit = _accounts(config)
    accounts.add(name, role, _new_password(password_stdin))
    audit.record(_cli_actor(), "user.add", name, role=role)
    typer.echo(f"user {name} added ({role})")


@users_app.command("list")
def users_list(config: ConfigOpt = None) -> None:
    """The users, their roles and whether they may sign in."""
    accounts, _ = _accounts(config)
    rows = accounts.list()
    if not rows:
        typer.echo("no users (add one: fabricad users add NAME --role admin)")
    for row in rows:
        typer.echo(f"{row.name:<24} {row.role:<9} {'disabled' if row.disabled else 'enabled':<9} since {row.created_at:%Y-%m-%d}")


def _change(config: Optional[Path], name: str, action: str, **change) -> None:
    accounts, audit = _accounts(config)
    try:
        accounts.update(name, **change)
    except KeyError:
        raise FabricadError(f"no user {name!r} (see `fabricad users list`)") from None
    detail = {k: v for k, v in change.items() if k != "password"} | ({"password_changed": True} if "password" in change else {})
    audit.record(_cli_actor(), action, name, **detail)


@users_app.command("passwd")
def users_passwd(name: str, password_stdin: PasswordStdinOpt = False, config: ConfigOpt = None) -> None:
    """Set a user's password (a forgotten one); the user's sessions end."""
    _change(config, name, "user.update", password=_new_password(password_stdin))
    typer.echo(f"password of {name} changed")


@users_app.command("role")
def users_role(name: str, role: Annotated[str, typer.Argument(help="operator or admin")], config: ConfigOpt = None) -> None:
    """Give a user another role; the user's sessions end."""
    _change(config, name, "user.update", role=role)
    typer.echo(f"{name} is now {role}")


@users_app.command("disable")
def users_disable(name: str, config: ConfigOpt = None) -> None:
    """Stop a user from signing in (records keep the name); the user's sessions end."""
    _change(config, name, "user.update", disabled=True)
    typer.echo(f"{name} disabled")


@users_app.command("enable")
def users_enable(name: str, config: ConfigOpt = None) -> None:
    _change(config, name, "user.update", disabled=False)
    typer.echo(f"{name} enabled")


@users_app.command("remove")
def users_remove(name: str, config: ConfigOpt = None) -> None:
    """Remove a user (the audit log and the defects they acknowledged keep the name)."""
    accounts, audit = _accounts(config)
    try:
        accounts.remove(name)
    except KeyError:
        raise FabricadError(f"no user {name!r} (see `fabricad users list`)") from None
    audit.record(_cli_actor(), "user.remove", name)
    typer.echo(f"user {name} removed")


@app.command()
def engine(
    kind: Annotated[str, typer.Argument(help="ray (Triton runs its own server on `fabricad export --format triton` output)")],
    models: Annotated[Path, typer.Option("--models", help="Folder of exported bundles to serve.")] = Path("models"),
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8100,
    replicas: Annotated[int, typer.Option("--replicas", help="Replicas per model (the minimum when autoscaling).")] = 1,
    max_replicas: Annotated[Optional[int], typer.Option("--max-replicas", help="Autoscale on queue length up to this many.")] = None,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads (and Ray CPUs) per replica.")] = 1,
) -> None:
    """Serve bundles from a scale-out engine; services reach it with FABRICAD_ENGINE=ray and
    FABRICAD_ENGINE_URL=http://HOST:PORT."""
    import time

    if kind != "ray":
        raise FabricadError(f"unknown engine {kind!r}: `fabricad engine ray`; for Triton export a model repository "
                            "with `fabricad export --format triton` and start tritonserver on it")
    from fabricad.serving.ray_app import serve_bundles

    names = serve_bundles(models, host=host, port=port, replicas=replicas, max_replicas=max_replicas, threads=threads)
    typer.echo(f"Ray Serve on http://{host}:{port}/ serving {', '.join(names)}; Ctrl+C stops it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        from ray import serve

        serve.shutdown()


@app.command()
def info(checkpoint: Annotated[Path, typer.Argument(help="model.ckpt or its folder, or an exported bundle folder.")]) -> None:
    """Show what a checkpoint or a bundle holds: model, teacher, data, training and score statistics.

    A bundle is read without PyTorch (on the line PC) and its graph checked against its sha256."""
    import yaml

    folder = checkpoint.parent if checkpoint.name == "model.json" else checkpoint
    if (folder / "model.json").is_file():
        typer.echo(yaml.safe_dump(bundle_summary(folder), sort_keys=False))
        return
    from fabricad.training import read_checkpoint

    ckpt = read_checkpoint(checkpoint)
    stats = {k: v for k, v in ckpt.score_stats.items() if k != "scores"}
    training = {k: v for k, v in ckpt.training.items() if k not in ("optimizer", "best_state", "history")}
    summary = {
        "fabricad_version": ckpt.version,
        "teacher": ckpt.teacher,
        "config": ckpt.config.model_dump(mode="json"),
        "training": training,
        "holdout_scores": stats,
        "texture_reference": (f"weave spectrum of {ckpt.texture['size'][0]}x{ckpt.texture['size'][1]} windows"
                              if ckpt.texture else "none (scans are scored as they are)"),
    }
    typer.echo(yaml.safe_dump(summary, sort_keys=False))


def bundle_summary(folder: Path) -> dict:
    """What `fabricad info` shows of an exported bundle (its normal scores as a count)."""
    from fabricad.inference.bundle import read_bundle

    meta, graph = read_bundle(folder)  # refuses a graph that does not match its sha256
    summary = meta.model_dump(mode="json", exclude={"normal_scores", "texture", "format", "model_file"})
    summary["graph"] = f"{graph.name}, {graph.stat().st_size / 1e6:.1f} MB, sha256 verified"
    summary["normal_scores"] = f"{len(meta.normal_scores)} held-out normal scores (for recalibration)"
    summary["texture_reference"] = "weave spectrum (scans are aligned to it)" if meta.texture else "none (scans are scored as they are)"
    return summary


@app.command()
def generate(
    out: Annotated[Path, typer.Argument(help="Dataset root to write (MVTec layout, one folder per fabric).")],
    fabric: Annotated[list[str], typer.Option("--fabric", help="Fabric(s) to generate: plain, twill, knit, fine-grey, white-backlit, felt (a nonwoven).")] = ["plain"],
    size: Annotated[int, typer.Option("--size", help="Image side in pixels (the height when --width is given).")] = 256,
    width: Annotated[Optional[int], typer.Option("--width", help="Image width in pixels, for non-square images (default: --size).")] = None,
    grayscale: Annotated[bool, typer.Option("--grayscale", help="Single-channel images, as a monochrome camera gives.")] = False,
    train_images: Annotated[int, typer.Option("--train-images")] = 40,
    test_good: Annotated[int, typer.Option("--test-good")] = 10,
    test_defect: Annotated[int, typer.Option("--test-defect")] = 20,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    photos: Annotated[bool, typer.Option("--photos", help="Photographs instead of scans: each image of its own size "
                                         "(239-400 px a side), lit by a gradient, vignetted, some with a table beside "
                                         "the material.")] = False,
) -> None:
    """Generate synthetic fabric images with realistic defects and exact masks."""
    from fabricad.data.synthetic import FABRICS, Scene, generate_category

    for name in fabric:
        if name not in FABRICS:
            raise FabricadError(f"unknown fabric {name!r}; choose from {', '.join(FABRICS)}")
        folder = generate_category(
            out, name, size=(size, width or size), n_train=train_images, n_test_good=test_good,
            n_test_defect=test_defect, seed=seed, grayscale=grayscale, scene=Scene() if photos else None,
        )
        typer.echo(f"wrote {folder}")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--workdir", help="Where data, model, bundle and the defect store are written.")] = Path("runs/demo"),
    max_steps: Annotated[int, typer.Option("--max-steps", help="Training budget in optimiser steps.")] = 300,
    train_images: Annotated[int, typer.Option("--train-images", help="Synthetic normal images to train on.")] = 30,
    category: CategoryOpt = None,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Start the service and dashboard at the end.")] = True,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    fps: Annotated[float, typer.Option("--fps", help="Frame rate of the simulated camera.")] = 2.0,
    roll_length_m: Annotated[float, typer.Option("--roll-length-m", min=0, max=100_000,
                                                 help="Length of each simulated roll on the camera; 0: no rolls.")] = 10.0,
) -> None:
    """Everything on an embedded default: synthetic fabric (or FABRICAD_DATA), train, evaluate,
    export, then the service with the dashboard and a simulated camera running simulated rolls
    (roll map, 4-point grade, PDF on the Rolls page). Re-running reuses each step."""
    from fabricad.demo import DemoPlan, run_demo

    require_module("torch")  # before generating data: training comes next
    run_demo(DemoPlan(workdir, max_steps=max_steps, train_images=train_images, category=category),
             serve=serve, host=host, port=port, fps=fps, roll_length_m=roll_length_m)


def main() -> None:
    """Every failure a user can cause ends in one `error:` line and exit status 2, usage mistakes
    included (click's own boxed messages are replaced so that scripts and people see one form)."""
    try:  # typer ≥ 0.20 carries its own copy of click
        from typer._click.exceptions import (
            ClickException,
            NoArgsIsHelpError,
            UsageError,
        )
    except ImportError:  # pragma: no cover - older typer on click
        from click.exceptions import ClickException, NoArgsIsHelpError, UsageError

    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except NoArgsIsHelpError as exc:  # `fabricad` or `fabricad train`-like groups alone: their help
        typer.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        sys.exit(2)
    except UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "fabricad"
        typer.secho(f"error: {exc.format_message()} (see '{command} --help')", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except ClickException as exc:  # a bad file for a file option and the like
        typer.secho(f"error: {exc.format_message()}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except FabricadError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except ModuleNotFoundError as exc:
        error = missing_extra(exc.name)
        if error is None:
            raise
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except OSError as exc:  # a folder that cannot be written, a full disk, a port in use: the machine's answer
        where = f" ({exc.filename})" if exc.filename else ""
        typer.secho(f"error: {exc.strerror or exc}{where}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
