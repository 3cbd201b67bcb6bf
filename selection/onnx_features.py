"""An encoder extractor run on onnxruntime: the same rows as the torch extractor it wraps
(within float round-off, tested) from an exported graph of the encoder and its pooling.

Not what the backend serves: measured here (benchmarks/distances_and_features.py, 2-core
EPYC, real images at 448 px) it embedded 13.3 images/s against torch's 12.7 (1.05x), not
worth a second engine's memory; the benchmark keeps the comparison for other machines.

Preprocessing (shrinking, scaling, normalising) stays the torch extractor's own code; only
the forward pass and the pooling run on onnxruntime, one image per call. The graph is
exported once per extractor version to `<folder>/features-<hash>.onnx`, written
atomically, so processes sharing a cache export it once, and checked against torch at
load. The version is the wrapped extractor's: both engines fill and read the same cache.
"""

from __future__ import annotations

import copy
import hashlib
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from selection.atomic import atomic_write
from selection.extractors import EncoderExtractor

OPSET = 17
CHECK_TOLERANCE = 1e-4  # max difference from torch's rows at load, relative to their largest


class PooledEncoder(nn.Module):
    """The encoder and the extractor's pooling as one module (what is exported)."""

    def __init__(self, extractor: EncoderExtractor) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(extractor.encoder).cpu().float().eval()
        self.stages = extractor.stages
        self.grid = extractor.grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = list(self.encoder(x))
        kept = maps if self.stages is None else [maps[i] for i in self.stages]
        return torch.cat([F.adaptive_avg_pool2d(m, self.grid).flatten(1) for m in kept], dim=1)


class OnnxExtractor:
    """`extractor`'s rows, computed by onnxruntime (CPU, as many threads as torch uses)."""

    def __init__(self, extractor: EncoderExtractor, folder: Path | str) -> None:
        self.base = extractor
        self.name = extractor.name
        self.version = extractor.version
        digest = hashlib.sha256(f"{extractor.version}|opset={OPSET}".encode()).hexdigest()
        self.path = Path(folder) / f"features-{digest[:20]}.onnx"
        if not self.path.is_file():
            export_features(extractor, self.path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # the arena keeps its buffers between images: 1.7x the images/s without it here
        options.enable_cpu_mem_arena = True
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._check()

    def _check(self) -> None:
        """Refuse a graph whose rows differ from torch's (e.g. a file of another version)."""
        probe = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
        want, got = self.base([probe]), self([probe])
        error = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-12))
        if got.shape != want.shape or error > CHECK_TOLERANCE:
            raise ValueError(f"{self.path.name}: rows differ from torch (relative {error:.1e})")

    def shrink(self, image: np.ndarray) -> np.ndarray:
        return self.base.shrink(image)

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if len(images) == 0:
            raise ValueError("no images to embed")
        rows = []
        for image in images:
            x = self.base.preprocess([image]).contiguous().cpu().numpy()
            rows.append(self._session.run(None, {self._input: x})[0])
        return np.concatenate(rows).astype(np.float32)


def export_features(extractor: EncoderExtractor, path: Path) -> Path:
    """Write the encoder and pooling of `extractor` as ONNX (dynamic batch, its fixed
    input size)."""
    module = PooledEncoder(extractor)
    for p in module.parameters():
        p.requires_grad_(False)
    dummy = torch.zeros(1, 3, extractor.size, extractor.size)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (dummy,),
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=["image"],
            output_names=["features"],
            dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}},
        )
    with atomic_write(path) as fh:
        fh.write(buf.getvalue())
    return path
