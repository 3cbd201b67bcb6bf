"""`crackal score`: distances of one or more unlabeled pools from a training set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selection import plots, report
from selection.cache import FeatureCache, default_cache_dir
from selection.embed import EmbeddedSet, embed_paths
from selection.extractors import DEFAULT_SIZE, FeatureExtractor, imagenet_extractor
from selection.images import DatasetError, list_images
from selection.projection import DEFAULT_COMPONENTS
from selection.ranking import DEFAULT_BAND
from selection.scoring import SetScores, score_set


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="rank unlabeled images by their distance from the training set",
        description=(
            "Embed the training set and each pool, fit PCA on train + pool (separately per "
            "pool), and write every pool image's image-to-dataset distance I_dist, its "
            "min-max scaled value, rank and whether it falls in the labelling band."
        ),
    )
    p.add_argument(
        "--train",
        required=True,
        type=Path,
        metavar="DIR",
        help="training set P: a folder of images, or a dataset folder with images/",
    )
    p.add_argument(
        "--pool",
        required=True,
        action="append",
        metavar="[NAME=]DIR",
        help="an unlabeled set S (repeatable); NAME defaults to the folder name",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="report folder")
    p.add_argument(
        "--extractor",
        default="imagenet",
        help="imagenet (default) or model:<version|current> (needs --registry)",
    )
    p.add_argument("--registry", type=Path, metavar="DIR", help="model registry, for model:")
    p.add_argument(
        "--components",
        type=int,
        default=DEFAULT_COMPONENTS,
        help="PCA components z (default: %(default)s; clamped to what data allow)",
    )
    p.add_argument(
        "--size",
        type=int,
        default=DEFAULT_SIZE,
        help="images are resized to SIZE x SIZE (default: %(default)s)",
    )
    p.add_argument(
        "--grid",
        type=int,
        default=1,
        help="pool each stage over a GRID x GRID grid (default: 1 = global)",
    )
    p.add_argument(
        "--band",
        type=float,
        nargs=2,
        default=DEFAULT_BAND,
        metavar=("LOW", "HIGH"),
        help="scaled-distance band of labelling candidates (default: 0.6 1)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="images fetched and decoded per step (one per forward pass on a CPU)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="feature cache folder (default: $CRACKAL_CACHE or ~/.cache/crackal)",
    )
    p.add_argument("--no-cache", action="store_true", help="compute every feature afresh")
    p.add_argument(
        "--save-features",
        action="store_true",
        help="also write features/<set>.npz (features, names) for train and pools",
    )
    p.set_defaults(run=run)


def parse_pools(specs: list[str]) -> dict[str, Path]:
    """`[NAME=]DIR` specs -> {name: folder}; names must be unique."""
    pools: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        path = Path(folder if sep else spec)
        if not sep:
            name = path.name if path.name != "images" else path.parent.name
        if not name:
            raise DatasetError(f"cannot name pool {spec!r}: use NAME=DIR")
        if name in pools or name == "train":
            raise DatasetError(f"two sets are named {name!r}: use NAME=DIR to tell them apart")
        pools[name] = path
    return pools


def make_extractor(
    spec: str, size: int, grid: int, registry: Path | None = None
) -> FeatureExtractor:
    """The extractor a user named: `imagenet`, or `model:<version|current>` with a registry."""
    if spec == "imagenet":
        from training.device import resolve_device

        return imagenet_extractor(size=size, grid=grid, device=resolve_device())
    if spec.startswith("model:"):
        if registry is None:
            raise DatasetError(f"--extractor {spec} needs --registry DIR")
        from training.model_features import model_extractor
        from training.registry import Registry

        return model_extractor(Registry(registry), spec.split(":", 1)[1] or "current", size, grid)
    raise DatasetError(f"unknown extractor {spec!r} (available: imagenet, model:<version>)")


def run(args: argparse.Namespace) -> int:
    if args.components < 1:
        raise DatasetError("--components must be at least 1")
    # Check every folder before any slow work starts.
    pool_dirs = parse_pools(args.pool)
    train_paths = list_images(args.train)
    pool_paths = {name: list_images(folder) for name, folder in pool_dirs.items()}

    extractor = make_extractor(args.extractor, args.size, args.grid, args.registry)
    cache = (
        None
        if args.no_cache
        else FeatureCache(args.cache or default_cache_dir(), extractor.version)
    )

    def embed(name: str, paths: list[Path]) -> EmbeddedSet:
        embedded = embed_paths(paths, extractor, cache, args.batch_size, desc=f"embed {name}")
        if not embedded.paths:
            raise DatasetError(f"no readable image in set {name!r}")
        return embedded

    train = embed("train", train_paths)
    pools = {name: embed(name, paths) for name, paths in pool_paths.items()}

    band = tuple(args.band)
    scored: list[SetScores] = [
        score_set(name, pool.names, pool.features, train.features, args.components, band)
        for name, pool in pools.items()
    ]

    out: Path = args.out
    report.write_scores_csv(out / "scores.csv", scored)
    skipped = [err for s in [train, *pools.values()] for err in s.skipped]
    summary = report.summary(
        scored,
        train_size=len(train.paths),
        extractor=extractor.name,
        extractor_version=extractor.version,
        components=args.components,
        band=band,
        extra={
            "train": str(args.train),
            "pools": {n: str(p) for n, p in pool_dirs.items()},
            "skipped": [{"file": e.path, "reason": e.reason} for e in skipped],
        },
    )
    report.write_json(out / "summary.json", summary)
    if args.save_features:
        for name, embedded in {"train": train, **pools}.items():
            report.save_features(
                out / "features" / f"{name}.npz", embedded.names, embedded.features
            )
    plots.violin_plot(out / "violin.png", scored)
    plots.sorted_distance_plot(out / "sorted_distance.png", scored)

    print(format_table(summary))
    print(f"report written to {out}/")
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s):", file=sys.stderr)
        for err in skipped:
            print(f"  {err.path}: {err.reason}", file=sys.stderr)
        return 1
    return 0


def format_table(summary: dict) -> str:
    """The summary as a small text table, farthest set first."""
    rows = sorted(summary["sets"].items(), key=lambda kv: -kv[1]["o_dist"])
    lines = [
        f"train: {summary['train_size']} images, extractor {summary['extractor']}",
        f"{'set':<16}{'n':>6}{'O_dist':>14}{'scaled':>9}{'in band':>9}{'var kept':>10}",
    ]
    for name, s in rows:
        lines.append(
            f"{name:<16}{s['n']:>6}{s['o_dist']:>14.2f}{s['o_dist_scaled']:>9.3f}"
            f"{s['in_band']:>9}{s['explained_variance']:>10.3f}"
        )
    return "\n".join(lines)
