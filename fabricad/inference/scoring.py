"""A dataset's samples scored through the engine: what `fabricad eval` measures, what training
and export calibrate thresholds on. Samples cut from one source image (a scan's tiles) are
scored as windows of it, with its alignment, edges and ROI, exactly as the engine serves the scan;
whole images are inspected as the engine inspects them."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from fabricad.data.images import resize
from fabricad.data.samples import Sample
from fabricad.inference.engine import InferenceEngine


@dataclass
class SampleScores:
    scores: np.ndarray
    """(N,) float64: each sample's score, the maximum of its map."""
    maps: np.ndarray | None
    """(N, H, W) float16 at the asked size (None when not asked for)."""
    seconds: float
    """Time spent in the engine, image decoding left out."""


def _chunks(samples: list[Sample], most: int) -> list[list[tuple[object, list[int]]]]:
    """Source images with their samples' indices, grouped so that one engine call gets about
    `most` windows (a scan's tiles, or several small images' tiles, per batch)."""
    sources: dict[object, list[int]] = {}
    for i, sample in enumerate(samples):
        sources.setdefault(sample.path if sample.crop is not None else ("whole", i), []).append(i)
    chunks, chunk, count = [], [], 0
    for key, index in sources.items():
        chunk.append((key, index))
        count += len(index)
        if count >= most:
            chunks.append(chunk)
            chunk, count = [], 0
    return chunks + ([chunk] if chunk else [])


def score_samples(engine: InferenceEngine, samples: list[Sample], size: tuple[int, int] | None = None,
                  progress: bool = False, desc: str = "scoring") -> SampleScores:
    """Scores of `samples`, and with `size` their maps at that size (the network's, where
    evaluation compares them with the masks)."""
    n = len(samples)
    scores = np.zeros(n, np.float64)
    maps = np.zeros((n, *size), np.float16) if size is not None else None
    elapsed = 0.0
    chunks = _chunks(samples, engine.batch_size)
    bar = tqdm(total=n, desc=desc, unit="image", disable=not progress)
    for chunk in chunks:
        whole = [index[0] for key, index in chunk if isinstance(key, tuple)]
        tiled = [index for key, index in chunk if not isinstance(key, tuple)]
        images = [samples[i].load() for i in whole]
        sources = [(samples[index[0]].load_source(), [samples[i].crop for i in index]) for index in tiled]
        began = time.perf_counter()
        results = engine.predict(images, regions=False) if images else []
        window_results = engine.predict_windows(sources, regions=False) if sources else []
        elapsed += time.perf_counter() - began
        pairs = list(zip(whole, results)) + [(i, r) for index, rs in zip(tiled, window_results) for i, r in zip(index, rs)]
        for i, result in pairs:
            scores[i] = result.score
            if maps is not None:
                maps[i] = resize(result.anomaly_map, size)
        bar.update(len(pairs))
    bar.close()
    return SampleScores(scores, maps, elapsed)
