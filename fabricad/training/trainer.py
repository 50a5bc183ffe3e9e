"""`fabricad train`: fit the student to the frozen teacher on normal images of one fabric."""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from fabricad.config import FabricadConfig
from fabricad.data import Sample, load_dataset, read_image
from fabricad.data.alignment import TextureReference
from fabricad.data.holdout import holdout_split
from fabricad.data.images import image_size
from fabricad.data.tiling import (
    magnification,
    mixed_sizes,
    native_size,
    network_size,
    tile_of,
    tile_whole_images,
    whole_image_tile,
)
from fabricad.errors import ConfigError, DataError
from fabricad.inference.bundle_meta import preprocess_of
from fabricad.inference.scoring import score_samples
from fabricad.inference.thresholds import FEW_CALIBRATION_IMAGES
from fabricad.models import DistillationModel, create_model
from fabricad.models.loss import distillation_loss
from fabricad.training.checkpoint import (
    Checkpoint,
    build_model,
    read_checkpoint,
    save_checkpoint,
)
from fabricad.training.dataset import ImageDataset
from fabricad.training.device import select_device
from fabricad.training.distributed import DistillationStep, DistributedContext
from fabricad.training.premises import check_premises, sources_of
from fabricad.training.torch_backend import evaluating, scoring_engine

log = logging.getLogger(__name__)
FINETUNE_SHARE = 0.25
"""Share of a fine-tune's training set its new images are repeated to (`FineTune`)."""


@dataclass
class TrainResult:
    checkpoint: Path
    epochs: int
    steps: int
    best_loss: float
    seconds: float
    stopped_early: bool
    weights_digest: str = ""
    """sha256 of the final trainable weights: equal on every process of a distributed run."""
    image_size: tuple[int, int] | None = None
    """(height, width) the model was trained at: `data.image_size`, or less for smaller images."""


@dataclass
class FineTune:
    """What a fine-tune (`fabricad.training.finetune`) continues from, and the normal samples it adds."""

    checkpoint: Checkpoint
    extra: list[Sample]
    """new normal samples, cut as the checkpoint's training images were"""
    share: float = FINETUNE_SHARE

    def repeated(self, trained: int) -> list[Sample]:
        """`extra` repeated so it makes about `share` of a training set with `trained` samples
        (at least once each)."""
        if not self.extra:
            return []
        times = max(1, math.ceil(self.share * trained / ((1 - self.share) * len(self.extra))))
        return self.extra * times


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_readable(samples: list[Sample], progress: bool) -> None:
    """Decode every training file once up front (once per file, not per tile): a bad file
    fails the run now, by name, not after an hour of training."""
    bad = []
    for path in tqdm(sorted({s.path for s in samples}), desc="checking images", unit="img", disable=not progress, leave=False):
        try:
            read_image(path)
        except DataError as exc:
            bad.append(str(exc))
    if bad:
        listed = "\n  ".join(bad[:20])
        raise DataError(f"{len(bad)} training image(s) cannot be read; fix or remove them:\n  {listed}")


def holdout_loss(model: DistillationModel, dataset: ImageDataset, batch_size: int, device: torch.device,
                 hard_fraction: float = 1.0) -> float:
    """The training objective on held-out normal images: what early stopping watches. No maps:
    they would cost every epoch and tell the loss nothing."""
    total = 0.0
    with evaluating(model), torch.no_grad():
        for batch in DataLoader(dataset, batch_size=batch_size):
            teacher, student = model.distill(batch.to(device))
            total += distillation_loss(teacher, student, hard_fraction).item() * len(batch)
    return total / max(len(dataset), 1)


def holdout_scores(model: DistillationModel, samples: list[Sample], batch_size: int, device: torch.device,
                   config: FabricadConfig, texture: TextureReference | None = None,
                   dataset_info: dict | None = None) -> list[float]:
    """Image scores of held-out normal images through the inference engine, as a bundle of this
    model will score them (its cut, fabric ROI and edges, texture alignment), so a threshold
    calibrated on them fits what inference reports."""
    size = tuple(config.data.image_size)
    engine = scoring_engine(model, device, size, batch_size=batch_size, reference=texture,
                            preprocess=preprocess_of(dataset_info or {}, size, model.config.context),
                            fabric_edges=model.config.fabric_edges, fabric_roi=model.config.fabric_roi)
    with evaluating(model):
        return score_samples(engine, samples).scores.tolist()


def score_statistics(scores: list[float]) -> dict:
    """What calibration needs later: the held-out normal score distribution."""
    if not scores:
        return {}
    array = np.asarray(scores, dtype=np.float64)
    return {
        "count": int(array.size),
        "mean": float(array.mean()),
        "std": float(array.std()),
        "max": float(array.max()),
        "quantiles": {str(q): float(np.quantile(array, q)) for q in (0.5, 0.9, 0.95, 0.99, 0.999)},
        "scores": [float(s) for s in np.sort(array)],
    }


def keep_previous(ckpt_path: Path, resume: str | Path | None) -> None:
    """A new run into a folder that holds a model moves that model to `model.prev.ckpt` first:
    retraining a fabric into the same folder must not lose the model the line runs on to a run
    that turns out worse or is cut short. One generation is kept. Resuming it is not a new run."""
    if not ckpt_path.is_file() or (resume is not None and Path(resume).resolve() in (ckpt_path.resolve(), ckpt_path.parent.resolve())):
        return
    previous = ckpt_path.with_name("model.prev.ckpt")
    ckpt_path.replace(previous)
    log.warning("%s held a model: kept as %s", ckpt_path, previous.name)


def train(
    config: FabricadConfig,
    out_dir: str | Path,
    *,
    resume: str | Path | None = None,
    progress: bool = True,
    finetune: FineTune | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train and write `out_dir/model.ckpt`. Under torchrun, every process runs this; rank 0
    writes the files and shows progress (see `fabricad.training.distributed`). `finetune`:
    continue a trained model on more normal images (`fabricad.training.finetune`). `on_step` is
    called with (step, total steps) after every step, on rank 0: a job's progress for the service."""
    ctx = DistributedContext.from_env()
    device = ctx.device(select_device(config.train.device))
    ctx.start(device)
    try:
        return _train(config, Path(out_dir), resume, progress and ctx.is_main, ctx, device, finetune,
                      on_step if ctx.is_main else None)
    finally:
        ctx.stop()


def texture_reference(samples: list[Sample], most: int = 32) -> TextureReference | None:
    """The weave spectrum of the training images (at most `most` of them, evenly spread), saved
    with the model so inference can align scans whose weave runs at another angle."""
    return TextureReference.from_images([s.load_source() for s in sources_of(samples, most)])


def whole_images_reflected(config: FabricadConfig, tile: list[int] | None) -> FabricadConfig:
    """`model.tile_context` off where the dataset has no tiles (`tile` None): a whole image has no
    neighbours, so its context would be its own reflection — what the model's internal padding
    already does. Saving the setting off keeps such a model's input (and its exported graph's)
    the image itself."""
    if not config.model.tile_context or tile is not None:
        return config
    log.info("model.tile_context: the dataset holds whole images, not tiles: they are reflect-padded by the model")
    return config.model_copy(update={"model": config.model.model_copy(update={"tile_context": False})})


def whole_images_tiled(config: FabricadConfig, samples: list[Sample],
                       sizes: list[tuple[int, int]]) -> tuple[list[Sample], int | None]:
    """Whole images cut into native-scale tiles where `data.whole_images=tile` asks for it, and
    the tiles' side; otherwise, and for samples that are tiles already, as they are (None)."""
    if tile_of(samples) is not None or config.data.whole_images != "tile":
        return samples, None
    side = whole_image_tile(sizes, config.data.image_size)
    tiles = tile_whole_images(samples, side)
    log.info("data.whole_images=tile: %d training images%s cut into %d tiles of %dx%d px at their own scale",
             len(sizes), " of mixed sizes" if mixed_sizes(sizes) else "", len(tiles), side, side)
    return tiles, side


def not_enlarged(config: FabricadConfig, samples: list[Sample]) -> FabricadConfig:
    """`data.image_size` cut to the training images' own size where they are smaller, unless
    `data.upscale`. Saved so, the model is evaluated, exported and served at that size too."""
    if config.data.upscale:
        return config
    native = native_size(samples)
    size = network_size(config.data.image_size, native)
    if size == tuple(config.data.image_size):
        return config
    log.info("data.image_size: the training images are %dx%d px, so the network sees %dx%d, not %dx%d "
             "(data.upscale=true enlarges them)", native[1], native[0], size[1], size[0], *config.data.image_size[::-1])
    return config.model_copy(update={"data": config.data.model_copy(update={"image_size": size})})


def _train(config: FabricadConfig, out_dir: Path, resume: str | Path | None, progress: bool,
           ctx: DistributedContext, device: torch.device, finetune: FineTune | None,
           on_step: Callable[[int, int], None] | None) -> TrainResult:
    if config.data.path is None:
        raise ConfigError("no training data: pass --data PATH (or data.path in the config)")
    # Absolute, so that eval and export find the data from any working directory.
    config = config.model_copy(update={"data": config.data.model_copy(update={"path": str(Path(config.data.path).resolve())})})
    tc = config.train
    seed_everything(tc.seed)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    split = load_dataset(config.data.path, config.data.category)
    if ctx.is_main:
        check_readable(split.train, progress)
    sizes = [image_size(path) for path in {s.path: None for s in split.train}]
    split.train, whole_tile = whole_images_tiled(config, split.train, sizes)
    # (height, width) of the dataset's tiles at native scale, if it has them: the engine cuts
    # served images the same way, and the fabric ROI measures its window on the fabric.
    tile = tile_of(split.train)
    config = whole_images_reflected(config, tile)
    config = check_premises(config, split.train, sizes)
    train_samples, holdout_samples = holdout_split(split.train, config)
    config = not_enlarged(config, split.train)
    if finetune is not None:
        added = finetune.repeated(len(train_samples))
        log.info("fine-tuning with %d new normal samples, repeated to %d", len(finetune.extra), len(added))
        train_samples = train_samples + added
    log.info("training on %d images, %d held out (%s)", len(train_samples), len(holdout_samples), split.name)

    if resume is not None or finetune is not None:
        checkpoint = read_checkpoint(resume) if resume is not None else finetune.checkpoint
        if checkpoint.config.model != config.model or checkpoint.config.data.image_size != config.data.image_size:
            raise ConfigError(
                f"cannot {'resume' if resume is not None else 'fine-tune'} the model with another model or image size "
                "(its training images now give other settings); change only training settings, or start a new run"
            )
        model = build_model(checkpoint)
        # A fine-tune starts its own run (optimiser, steps, loss) from the trained weights.
        state = checkpoint.training if resume is not None else {}
    else:
        model, state = create_model(config.model), {}
    model.roi_scale = magnification(tile, config.data.image_size)
    texture = texture_reference(split.train) if config.model.align_texture and ctx.is_main else None
    model.to(device).train()
    # The choice only; the runtime itself logs, per input size, whether its graph was usable.
    log.info("teacher runtime: %s (train.teacher_runtime=%s on %s)",
             model.teacher.use_runtime(tc.teacher_runtime, device), tc.teacher_runtime, device.type)

    size = config.data.image_size
    context = config.model.context
    train_set = ImageDataset(train_samples, size, augment=config.data.augment, seed=tc.seed, flip=config.data.flip,
                             random_tiles=config.data.random_tiles, skew=config.data.skew, context=context)
    holdout_set = ImageDataset(holdout_samples, size, context=context)
    # One seeded permutation per epoch, cut into world × accumulate disjoint shards: this
    # process's micro-batch j of a step comes from shard rank × accumulate + j.
    shards = ctx.world_size * tc.accumulate
    shard_size = math.ceil(len(train_set) / shards)
    batch_size = min(tc.batch_size, shard_size)
    samplers = [DistributedSampler(train_set, num_replicas=shards, rank=ctx.rank * tc.accumulate + j, shuffle=True,
                                   seed=tc.seed) for j in range(tc.accumulate)]
    loaders = [DataLoader(train_set, batch_size=batch_size, sampler=sampler, drop_last=shard_size >= 2 * batch_size,
                          num_workers=config.data.workers, persistent_workers=config.data.workers > 0)
               for sampler in samplers]
    steps_per_epoch = len(loaders[0])
    step_module = DistillationStep(model, tc.hard_fraction)
    runner = (DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None)
              if ctx.enabled else step_module)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=tc.lr, betas=tc.betas)
    if state.get("optimizer"):
        optimizer.load_state_dict(state["optimizer"])
    use_amp = tc.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch = int(state.get("epoch", 0))
    step = int(state.get("step", 0))
    best_loss = float(state.get("best_loss", math.inf))
    bad_epochs = int(state.get("bad_epochs", 0))
    history: list[dict] = list(state.get("history", []))
    best_state = state.get("best_state") or copy.deepcopy(model.trainable_state_dict())
    stopped_early = False
    started = time.perf_counter()
    ckpt_path = out_dir / "model.ckpt"
    if ctx.is_main:
        keep_previous(ckpt_path, resume)
        config.to_yaml(_ensure(out_dir) / "config.yaml")

    def save(epoch: int, scores: list[float] | None = None) -> None:
        # Mid-run saves carry the best weights too, so a resumed run can still return them.
        if not ctx.is_main:
            return
        final = scores is not None
        save_checkpoint(
            ckpt_path,
            model,
            config,
            score_stats=score_statistics(scores) if scores is not None else {},
            texture=texture.encode() if texture is not None else None,
            training={
                "epoch": epoch,
                "step": step,
                "best_loss": best_loss,
                "bad_epochs": bad_epochs,
                "history": history,
                "optimizer": optimizer.state_dict(),
                "best_state": None if final else best_state,
                "world_size": ctx.world_size,
                "dataset": {
                    "name": split.name,
                    "format": split.format,
                    "train": len(train_samples),
                    "holdout": len(holdout_samples),
                    "tiled": tile is not None,
                    "tile": tile,
                    "whole_images_tile": whole_tile,
                },
            },
        )

    def budget_spent() -> bool:
        """Step or time budget; every process must agree, or one would wait for the others forever."""
        spent = bool(tc.max_steps and step >= tc.max_steps) or (
            tc.max_minutes is not None and time.perf_counter() - started > tc.max_minutes * 60)
        return ctx.mean(float(spent), device) > 0  # any process out of budget stops them all

    epoch = start_epoch
    bar = tqdm(total=tc.max_steps or tc.epochs * steps_per_epoch, initial=step, desc="training", unit="step", disable=not progress)
    for epoch in range(start_epoch + 1, tc.epochs + 1):
        running = 0.0
        for sampler in samplers:
            sampler.set_epoch(epoch)
        for micro_batches in zip(*loaders):
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for j, batch in enumerate(micro_batches):
                batch = batch.to(device, non_blocking=True)
                last = j == len(micro_batches) - 1
                # Gradients are exchanged once per step, after the last micro-batch.
                with runner.no_sync() if ctx.enabled and not last else nullcontext():
                    with torch.autocast(device.type, enabled=use_amp):
                        loss = runner(batch) / len(micro_batches)
                    scaler.scale(loss).backward()
                step_loss += loss.item()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            running += step_loss
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{step_loss:.4f}", best=f"{best_loss:.4f}")
            if on_step is not None:
                on_step(step, tc.max_steps or tc.epochs * steps_per_epoch)
            if budget_spent():
                break
        train_loss = ctx.mean(running / max(steps_per_epoch, 1), device)
        ctx.sync_buffers(model)  # identical BatchNorm statistics, so every process judges alike
        if holdout_samples:
            monitored = holdout_loss(model, holdout_set, batch_size, device, tc.hard_fraction)
        else:
            monitored = train_loss
        history.append({"epoch": epoch, "train_loss": train_loss, "holdout_loss": monitored})
        if monitored < best_loss - 1e-5:
            best_loss, bad_epochs = monitored, 0
            best_state = copy.deepcopy(model.trainable_state_dict())
        else:
            bad_epochs += 1
        if finetune is not None:  # the last weights: the best on the old held-out images have not learnt the new ones
            best_state = copy.deepcopy(model.trainable_state_dict())
        save(epoch)  # resumable after every epoch
        if budget_spent():
            break
        if bad_epochs >= tc.patience:
            stopped_early = True
            bar.write(f"early stop at epoch {epoch}: held-out loss has not improved for {tc.patience} epochs")
            break
    bar.close()

    model.load_trainable_state_dict(best_state)
    calibration = holdout_samples or train_samples  # no holdout: the best we have, flagged below
    scores = holdout_scores(model, calibration, batch_size, device, config, texture,
                            {"tiled": tile is not None, "tile": tile})
    save(epoch, scores)
    if not holdout_samples:
        log.warning("no held-out images: score statistics come from training images and are optimistic")
    elif len(holdout_samples) < FEW_CALIBRATION_IMAGES:
        log.warning("the 1 %% false-alarm threshold rests on %d held-out normal images (of %d): expect more false "
                    "alarms than 1 %% on the line; add defect-free images, or recalibrate on the line's own frames "
                    "(the service's teach-in)", len(holdout_samples), len(split.train))
    return TrainResult(ckpt_path, epoch, step, best_loss, time.perf_counter() - started, stopped_early,
                       weights_digest(model.trainable_state_dict()), tuple(size))


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
