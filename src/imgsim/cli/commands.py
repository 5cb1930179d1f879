"""The `imgsim` command: one subcommand per pipeline stage, each a thin call into the library."""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

from ..core.config import DEFAULT_DATA_DIR, MODEL_FILE, ONNX_FILE, Config
from ..core.errors import ImgsimError, storage_error
from ..core.logs import setup_logging

if TYPE_CHECKING:
    from ..core.config import DuplicatesConfig, ExtractConfig
    from ..explore.duplicates import DuplicateReport
    from ..model.embedder import Embedder
    from ..train.train import TrainResult

log = logging.getLogger("imgsim")
T = TypeVar("T")


def _config(args: argparse.Namespace) -> Config:
    from ..core.config import load_config

    return load_config(getattr(args, "config", None))


def _given(args: argparse.Namespace) -> dict:
    """The config flags the user gave: a config file's values stand unless a flag overrides them."""
    from .cliflags import given

    return given(args, args.config_flags)


def _add_config_flags(
    p: argparse.ArgumentParser,
    cls: type,
    names: Sequence[str] | None = None,
    aliases: dict[str, list[str]] | None = None,
) -> None:
    """Flags generated from the config dataclass `cls`, noted in args.config_flags."""
    from .cliflags import add_dataclass_flags

    p.set_defaults(config_flags=add_dataclass_flags(p, cls, names, aliases))


def _prepare(data_dir: str | None = None, workdir: str | None = None) -> None:
    """Refuse a half-renamed image folder; remove temporary files a killed run left behind."""
    if data_dir is not None:
        from ..files.rename_journal import check_folder

        check_folder(data_dir)  # InterruptedRenameError: says to run `imgsim rename --recover`
    if workdir is not None:
        from ..core.fileio import clean_stale_temps

        for name in clean_stale_temps(workdir):
            log.info("Removed %s, left by an interrupted write", name)


def _check_device(name: str) -> None:
    """Name a device this machine lacks before anything is written: before the work folder
    remembers what was named, the store is opened or a checkpoint folder is made."""
    if (name or "cpu").strip().lower() == "cpu":  # the default: no need to import torch
        return
    from ..model.device import resolve_device

    resolve_device(name)  # DeviceError: says what is missing


def _explicit(args: argparse.Namespace, cfg: object, names: Sequence[str]) -> dict[str, str]:
    """The settings among `names` the user named: by a flag, or a config file (not a default)."""
    flags, defaults = _given(args), type(cfg)()
    return {
        n: str(getattr(cfg, n))
        for n in names
        if n in flags or getattr(cfg, n) != getattr(defaults, n)
    }


def _recalled(
    args: argparse.Namespace, cfg: T, workdir: str, names: Sequence[str], record: bool = False
) -> T:
    """`cfg` with what `workdir` remembers for the `names` not named here.

    `record`: the command writes into the workdir, which remembers what was named.
    """
    from ..core.config import replace
    from ..core.workfolder import settle

    explicit = _explicit(args, cfg, names)
    found = settle(workdir, explicit, names, record)
    if "model_path" in names and "model_path" not in {**explicit, **found}:
        found["model_path"] = str(Path(workdir) / MODEL_FILE)  # the workdir's own
    return replace(cfg, found)


def _data_dir(args: argparse.Namespace, workdir: str = ".") -> str:
    """The image folder of a command without config-file settings: named, remembered or default."""
    from ..core.workfolder import settle

    named = {"data_dir": args.data_dir} if args.data_dir is not None else {}
    found = settle(workdir, named, ["data_dir"], False).get("data_dir")
    return found or args.data_dir or DEFAULT_DATA_DIR


def cmd_stats(args: argparse.Namespace) -> int:
    from ..images.data import dataset_stats, scan_images

    data_dir = _data_dir(args, args.workdir)
    _prepare(data_dir)
    stats = dataset_stats(scan_images(data_dir), data_dir)
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"Dataset: {stats['data_dir']}")
    print(f"Total images: {stats['total_images']}")
    print(f"Categories: {stats['num_categories']}")
    for name, count in stats["categories"].items():
        print(f"  {name:<24} {count:>6}")
    if stats["uncategorised"]:
        print(
            f"Without a category: {len(stats['uncategorised'])} (e.g. {stats['uncategorised'][0]})"
        )
    if not stats["usable"]:
        from ..images.data import NO_CATEGORIES_HELP

        print(NO_CATEGORIES_HELP, file=sys.stderr)
        return 1
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    from ..files.rename import run

    categories = [c for c in args.categories.split(",")] if args.categories else None
    folder = Path(_data_dir(args, args.workdir))
    return run(folder, categories, args.dry_run, args.undo, args.yes, recover_run=args.recover)


def _changed(values: object, defaults: object) -> dict:
    """Settings a config file set away from their defaults."""
    from ..core.config import to_dict

    new, old = to_dict(values), to_dict(defaults)
    return {k: v for k, v in new.items() if old.get(k) != v}


def cmd_train(args: argparse.Namespace) -> int:
    from ..core.config import CHECKPOINT_DIR, ModelConfig, TrainConfig, replace
    from ..train.checkpoints import latest, saved_configs
    from ..train.distributed import from_env
    from ..train.train import train
    from .cliflags import given

    cfg = _config(args)
    model_set = {**_changed(cfg.model, ModelConfig()), **given(args, args.model_flags)}
    train_set = {**_changed(cfg.train, TrainConfig()), **given(args, args.train_flags)}
    model_cfg, train_cfg = replace(ModelConfig(), model_set), replace(TrainConfig(), train_set)
    _check_device(train_cfg.device)
    found = latest(Path(train_cfg.output_dir) / CHECKPOINT_DIR) if args.resume else None
    if found:
        # The run keeps its own settings; only what is given here may differ (and is refused
        # by train() if it would change the result).
        saved_train, saved_model = saved_configs(found[1])
        train_cfg, model_cfg = replace(saved_train, train_set), replace(saved_model, model_set)
    else:
        args.config_flags = args.train_flags  # for _explicit
        train_cfg = _recalled(args, train_cfg, train_cfg.output_dir, ["data_dir"], True)
    _prepare(train_cfg.data_dir)
    _continue_training(args, train_cfg.output_dir)
    try:
        result = train(train_cfg, model_cfg, resume=args.resume)
    except KeyboardInterrupt:
        _say_checkpoint(Path(train_cfg.output_dir) / CHECKPOINT_DIR, train_cfg.checkpoint_every)
        raise
    if not from_env().main:  # under torchrun, rank 0 alone reports
        return 0
    print(f"Saved {result.model_path}: {_kept(result)}")
    if result.stopped_early:
        print(f"Stopped early: {result.stopped_early}; imgsim train --resume continues")
    workdir = "" if Path(train_cfg.output_dir) == Path() else f" --workdir {train_cfg.output_dir}"
    print(f"Next: imgsim extract{workdir}")
    return 0


def _kept(result: TrainResult) -> str:
    """Whose weights the model file holds, and why, for the summary."""
    epochs = len(result.history)
    if not result.kept_epoch:
        return f"the pretrained network's weights, {result.kept_reason}"
    record = result.history[result.kept_epoch - 1] if epochs >= result.kept_epoch else {}
    recall = record.get("val_recall_at_1")
    score = f" (validation Recall@1 {recall:.3f})" if recall is not None else ""
    return (
        f"the weights of epoch {result.kept_epoch} of {epochs}{score}; kept: {result.kept_reason}"
    )


def _continue_training(args: argparse.Namespace, workdir: str) -> None:
    """What a stopped `imgsim train` says to run: the same run, from its last checkpoint."""
    from ..core import interrupt

    config = f" --config {args.config}" if getattr(args, "config", None) else ""
    folder = "" if Path(workdir) == Path() else f" --workdir {workdir}"
    interrupt.continue_with(f"imgsim{config} train --resume{folder}")


def _say_checkpoint(root: Path, every: int) -> None:
    from ..train.checkpoints import latest_epoch

    epoch = latest_epoch(root)
    if epoch:
        log.info("The last checkpoint is epoch %d (one every %d epochs): --resume goes on from "
                 "there; later epochs are trained again", epoch, every)  # fmt: skip
    else:
        log.info("No checkpoint yet (one every %d epochs): --resume starts the run again", every)


def cmd_extract(args: argparse.Namespace) -> int:
    from ..core.config import replace
    from ..embed.extract import extract, extract_reference

    cfg = replace(_config(args).extract, _given(args))
    _check_device(cfg.device)
    cfg = _recalled(args, cfg, cfg.output_dir, ("data_dir", "model_path", "store"), True)
    _prepare(cfg.data_dir, cfg.output_dir)
    cfg = _use_pretrained(cfg, args)
    try:
        if args.reference is not None:
            result = extract_reference(cfg, args.reference, args.reference_size)
        else:
            result = extract(cfg)
    except KeyboardInterrupt:
        _say_index_kept(cfg.output_dir)
        raise
    print(
        f"Embedded {result.count} images ({result.embedding_dim} dims, "
        f"{result.images_per_second:.0f} images/s) into {result.output_dir}"
        + (f"; skipped {result.skipped} unreadable" if result.skipped else "")
    )
    return 0


def _say_index_kept(workdir: str) -> None:
    # The store changes in one transaction at the end of a run, so a stopped run left none.
    log.info("The index in %s is as it was before this run; running the command again embeds "
             "the images again (what this run embedded was not kept)", workdir)  # fmt: skip


def _use_pretrained(cfg: ExtractConfig, args: argparse.Namespace) -> ExtractConfig:
    """--pretrained: the bundled ImageNet network becomes the model file in the output folder,
    where serve and search look for it (never over a trained one)."""
    if not cfg.pretrained:
        return cfg
    from ..core.config import replace
    from ..model.network import ensure_pretrained
    from ..train.autosize import PRETRAINED_SIZE

    if args.model_path is None:
        cfg = replace(cfg, {"model_path": str(Path(cfg.output_dir) / MODEL_FILE)})
    model_id = ensure_pretrained(cfg.model_path, PRETRAINED_SIZE)
    print(f"Embedding with the pretrained EfficientNet-Lite0 ({cfg.model_path}, model {model_id})")
    return cfg


def cmd_index(args: argparse.Namespace) -> int:
    from ..core.config import replace
    from ..embed.update import update_index

    cfg = replace(_config(args).extract, _given(args))
    _check_device(cfg.device)
    cfg = _recalled(args, cfg, cfg.output_dir, ("data_dir", "model_path", "store"), True)
    _prepare(cfg.data_dir, cfg.output_dir)
    cfg = _use_pretrained(cfg, args)
    try:
        result = update_index(cfg, update=args.update, kind=args.kind)
    except KeyboardInterrupt:
        _say_index_kept(cfg.output_dir)
        raise
    if result.full:
        print(f"Indexed {result.total} images (all embedded) into {cfg.output_dir}", end="")
    else:
        print(
            f"Updated the index in {cfg.output_dir}: {result.embedded} embedded, "
            f"{result.reused} reused, {result.removed} removed, {result.unchanged} unchanged; "
            f"{result.total} images",
            end="",
        )
    skipped = f"; skipped {result.skipped} unreadable" if result.skipped else ""
    print(f" ({result.kind} index, {result.seconds:.1f}s){skipped}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from ..core.config import replace
    from ..embed.watch import run_watch

    cfg = replace(_config(args).extract, _given(args))
    _check_device(cfg.device)
    if args.output_dir is not None and args.model_path is None:  # --workdir: its own model
        cfg = replace(cfg, {"model_path": str(Path(args.output_dir) / MODEL_FILE)})
    _prepare(cfg.data_dir, cfg.output_dir)
    run_watch(cfg, poll=args.poll)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from ..core.config import replace
    from ..search.searcher import search_image

    cfg = replace(_config(args).search, _given(args))
    cfg = _recalled(args, cfg, cfg.workdir, ("store",))
    response = search_image(args.image, cfg, cfg.top_k, None, args.category)
    if args.json:
        print(json.dumps(response, indent=2))
        return 0
    if not response["results"]:
        print("No results above the threshold.")
    for i, r in enumerate(response["results"], start=1):
        # Similarity: how alike; the calibrated confidence: how likely the same category.
        same = f"  same category {r['confidence']:5.1f}%" if r["confidence"] is not None else ""
        print(
            f"{i:>3}. {r['similarity']:6.2f}%{same}  d={r['embedding_distance']:.4f}  "
            f"{r['category']:<16} {r['filename']}"
        )
    if response["hidden"]:
        print(
            f"{response['hidden']} more of the top {cfg.top_k} below the minimum similarity of "
            f"{response['threshold']:.1f}% — show them with --threshold 0"
        )
    return 0


def cmd_tune_threshold(args: argparse.Namespace) -> int:
    from ..core.config import ThresholdConfig, replace
    from ..train.threshold import tune_model_threshold

    cfg = replace(ThresholdConfig(), _given(args))
    cfg = _recalled(args, cfg, args.workdir, ("data_dir", "model_path"))
    choice = tune_model_threshold(
        cfg.model_path, cfg.data_dir, cfg.workers, cfg.precision, cfg.top_k
    )
    print(f"{choice.describe()}; saved in {cfg.model_path}")
    if choice.shortfall():
        log.warning(choice.shortfall())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ..core.workfolder import settle
    from ..web import serve

    _prepare(workdir=args.workdir or ".")
    if not args.store:
        args.store = settle(args.workdir or ".", {}, ["store"], False).get("store")
    serve(
        workdir=args.workdir or ".",  # "." keeps a config file's workdir
        host=args.host,
        port=args.port,
        config_path=args.config,
        debug=args.debug,
        dev=args.dev,
        workers=args.workers,
        threads=args.threads,
        store=args.store,
        runtime=args.runtime,
        device=args.device,
        watch=args.watch,
        watch_poll=args.watch_poll,
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if not (args.npy or args.onnx is not None):
        print("error: say what to export: --onnx [PATH] and/or --npy", file=sys.stderr)
        return 2
    if args.onnx is not None:
        from ..model.export import export_onnx

        model = args.model or str(Path(args.workdir or ".") / MODEL_FILE)
        path = export_onnx(model, args.onnx)
        print(f"Wrote {path} (ONNX, dynamic batch; see docs/onnx.md to run it elsewhere)")
    if args.npy:
        return _export_npy(args)
    return 0


def _export_npy(args: argparse.Namespace) -> int:
    from ..core.config import replace
    from ..store import open_store
    from ..store.exports import write_exports

    cfg = replace(_config(args).search, _given(args))
    cfg = _recalled(args, cfg, cfg.workdir, ("store",))
    model_id = _model_id(Path(args.model) if args.model else Path(cfg.workdir) / MODEL_FILE)
    with open_store(cfg.workdir, cfg.store or None, model_id) as store:
        count = write_exports(store, cfg.workdir)
    if not count:
        print(f"error: no index in {cfg.workdir} to export — run: imgsim index", file=sys.stderr)
        return 1
    print(
        f"Exported {count} embeddings to {cfg.workdir} (triplet_features.npy, triplet_images.npy)"
    )
    return 0


def _model_id(path: Path) -> str | None:
    """The id of the model file at `path`, or None without one (Milvus picks its latest)."""
    if not path.is_file():
        return None
    from ..model.modelfile import read_model_meta

    return str(read_model_meta(path)["model_id"])


def cmd_trash(args: argparse.Namespace) -> int:
    from ..files import trash

    if args.action == "restore":
        print(f"Restored {trash.restore(args.workdir, args.name)}")
    elif args.action == "empty":
        count = trash.empty(args.workdir, args.older_than)
        print(f"Deleted {count} file{'s' if count != 1 else ''} from the trash for good")
    elif args.json:
        print(json.dumps([i.to_dict() for i in trash.list_trash(args.workdir)], indent=2))
    else:
        items = trash.list_trash(args.workdir)
        for i in items:
            print(f"{i.to_dict()['trashed']}  {i.size:>10,}  {i.id}  {i.original}")
        print(f"{len(items)} file{'s' if len(items) != 1 else ''} in the trash")
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:
    from ..core.config import replace
    from ..core.workfolder import settle
    from ..explore.duplicates.text import report_lines

    _check_keep_flags(args)  # before minutes of fingerprinting
    cfg = replace(_config(args).duplicates, _given(args))
    named = {k: getattr(args, k) for k in ("model_path", "store") if getattr(args, k)}
    for key, value in settle(args.workdir, named, ("model_path", "store"), False).items():
        setattr(args, key, value)
    dismissed = _not_duplicates(args)
    if args.folder is not None:
        _prepare(args.folder)
        report = _duplicates_in_folder(args, cfg, dismissed)
    else:
        report = _duplicates_in_index(args, cfg, dismissed)
    if args.keep is not None:
        return _keep_best(args, report)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print("\n".join(report_lines(report)))
    return 0


def _check_keep_flags(args: argparse.Namespace) -> None:
    from ..core.errors import ConfigError

    if args.keep is None and (args.dry_run or args.trash):
        raise ConfigError("--dry-run and --trash go with --keep best (which copy stays)")
    if args.keep is not None and not (args.dry_run or args.trash):
        raise ConfigError("--keep best needs --dry-run (show what would move) or --trash")


def _keep_best(args: argparse.Namespace, report: DuplicateReport) -> int:
    """--keep best: the plan, carried out with --trash; 1 when an image could not be moved."""
    from ..explore.duplicates.plan import carry_out, plan_of
    from ..explore.duplicates.text import plan_lines
    from ..files.trash import trash_dir

    steps = plan_of(report.groups)
    if args.trash:
        carry_out(steps, _trash_mover(args, [n for s in steps for n in s.move]))
    folder = str(trash_dir(args.workdir))
    if args.json:
        action = "trash" if args.trash else "dry-run"
        plan = {"keep": args.keep, "action": action, "trash": folder,
                "groups": [s.to_dict() for s in steps]}  # fmt: skip
        print(json.dumps({**report.to_dict(), "plan": plan}, indent=2, ensure_ascii=False))
    else:
        print("\n".join(plan_lines(steps, args.trash, folder)))
    return 1 if any(s.failed for s in steps) else 0


def _trash_mover(args: argparse.Namespace, names: list[str]) -> Callable[[str], None]:
    """Moves one image to the workdir's trash: a folder's file, or the index's image (out of
    the index first, as the web page does; all of them in one change)."""
    from ..files import trash

    if args.folder is not None:

        def move(name: str) -> None:
            trash.move_to_trash(args.workdir, args.folder, name)

        return move
    from ..search.editor import CollectionEditor
    from ..search.searcher import Searcher

    searcher = Searcher.from_workdir(args.workdir, args.model_path, store=args.store, warn=False)
    removed = set(CollectionEditor(searcher).remove_images(names))

    def check(name: str) -> None:
        if name not in removed:
            raise trash.TrashError(f"{name!r} is not in the index any more")

    return check


def _not_duplicates(args: argparse.Namespace) -> set[frozenset[str]]:
    """Record --not-duplicates / --undo-not-duplicates in the workdir; the pairs now dismissed."""
    from ..explore.duplicates.dismissed import change_dismissed, group_pairs, load_dismissed

    if args.not_duplicates:
        pairs = group_pairs(args.not_duplicates[0], args.not_duplicates[1:])
        return change_dismissed(args.workdir, add=pairs)
    if args.undo_not_duplicates:
        pairs = group_pairs(args.undo_not_duplicates[0], args.undo_not_duplicates[1:])
        return change_dismissed(args.workdir, remove=pairs)
    return load_dismissed(args.workdir)


def _duplicates_in_folder(
    args: argparse.Namespace, cfg: DuplicatesConfig, dismissed: set[frozenset[str]]
) -> DuplicateReport:
    from ..explore.duplicates import find_in_folder

    if cfg.method == "hash":
        return find_in_folder(args.folder, cfg, dismissed=dismissed)
    embedder = _duplicates_embedder(args.model_path)
    from ..embed.extract import embed_records
    from ..explore.duplicates.views import ViewEmbedder

    def embed(records: list) -> tuple:
        return embed_records(embedder, embedder.image_size, records, progress=False)

    return find_in_folder(args.folder, cfg, embed, ViewEmbedder(embedder), dismissed)


def _duplicates_embedder(model_path: str | None) -> Embedder:
    """--model's network, else the pretrained one: a folder needs no trained model."""
    from ..explore.duplicates.finder import pretrained_embedder

    if model_path is None:
        return pretrained_embedder()
    from ..core.config import ExtractConfig, replace
    from ..embed.extract import extract_embedder
    from ..model.model_handle import ModelFile

    return extract_embedder(
        ModelFile(model_path), replace(ExtractConfig(), {"model_path": model_path})
    )


def _duplicates_in_index(
    args: argparse.Namespace, cfg: DuplicatesConfig, dismissed: set[frozenset[str]]
) -> DuplicateReport:
    from ..core.errors import EmbeddingsNotLoadedError
    from ..explore.duplicates import StoreFinder
    from ..explore.duplicates.views import ViewEmbedder
    from ..store import open_store

    _prepare(workdir=args.workdir)
    model_path = Path(args.model_path) if args.model_path else Path(args.workdir) / MODEL_FILE
    model_id = _model_id(model_path)
    with open_store(args.workdir, args.store, model_id) as store:
        if store.info() is None or store.count() == 0:
            raise EmbeddingsNotLoadedError(
                f"{store.why_empty()}; or name a folder: imgsim duplicates FOLDER"
            )
        # Turned copies are confirmed by the index's own network, embedding them turned.
        views = ViewEmbedder(_duplicates_embedder(str(model_path))) if model_id else None
        return StoreFinder(views, args.workdir).find(store, cfg, dismissed)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(
        Path(args.dir),
        per_class=args.per_class,
        epochs=args.epochs,
        serve=not args.no_serve,
        host=args.host,
        port=args.port,
    )


def _add_train(sub: argparse._SubParsersAction) -> None:
    from ..core.config import ModelConfig, TrainConfig
    from .cliflags import add_dataclass_flags

    p = sub.add_parser(
        "train",
        help="train the embedding network (the original's train_triplet.py)",
        description="Train the embedding network on an image folder. Run it under torchrun "
        "to train on several GPUs or machines (docs/scaling.md).",
    )
    _add_folder(p)
    aliases = {
        "data_dir": ["--data", "--data-dir"],
        "output_dir": ["--workdir", "--output-dir"],
        "learning_rate": ["--learning-rate", "--lr"],
    }
    train_flags = add_dataclass_flags(p, TrainConfig, aliases=aliases)
    network = p.add_argument_group("network (stored in the model file)")
    model_flags = add_dataclass_flags(network, ModelConfig)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the latest run in --output-dir with its own settings; flags that "
        "would change its result are refused",
    )
    _add_config_flag(p)
    p.set_defaults(func=cmd_train, train_flags=train_flags, model_flags=model_flags)


# The ExtractConfig fields each command takes as flags; engine, engine_concurrency and shard
# are index's (a config file's [extract] section may set them for both).
EXTRACT_FLAGS = (
    "data_dir", "model_path", "output_dir", "batch_size", "workers", "runtime",
    "thumbnail_cache", "plot", "store", "device", "pretrained",
)  # fmt: skip
INDEX_FLAGS = (
    "data_dir", "output_dir", "model_path", "engine", "engine_concurrency", "shard", "store",
    "device", "pretrained",
)  # fmt: skip


def _add_extract(sub: argparse._SubParsersAction) -> None:
    from ..core.config import ExtractConfig

    p = sub.add_parser(
        "extract", help="embed every image and write the index (extract_features_triplet.py)"
    )
    _add_folder(p)
    _add_config_flags(
        p,
        ExtractConfig,
        EXTRACT_FLAGS,
        {
            "data_dir": ["--data"],
            "output_dir": ["--workdir", "--output-dir"],
            "model_path": ["--model"],
        },
    )
    p.add_argument(
        "--reference",
        metavar="WEIGHTS",
        help="embed with a pretrained TorchScript feature extractor instead, for "
        "comparison (a local file: nothing is downloaded)",
    )
    p.add_argument("--reference-size", type=_at_least(1), default=224, help="its input size (224)")
    _add_config_flag(p)
    p.set_defaults(func=cmd_extract)


def _add_index(sub: argparse._SubParsersAction) -> None:
    from ..core.config import ExtractConfig

    p = sub.add_parser("index", help="build the index, or bring it up to date (--update)")
    _add_folder(p)
    p.add_argument(
        "--update",
        action="store_true",
        help="embed only new and changed images, drop deleted ones, keep the rest",
    )
    p.add_argument(
        "--kind",
        choices=("auto", "flat", "hnsw"),
        help="exact (flat) or approximate (hnsw) search; auto: HNSW from 50,000 images "
        "(default: as before, else auto)",
    )
    _add_config_flags(
        p,
        ExtractConfig,
        INDEX_FLAGS,
        {
            "data_dir": ["--data"],
            "output_dir": ["--workdir", "--output-dir"],
            "model_path": ["--model"],
            "engine_concurrency": ["--concurrency"],
        },
    )
    _add_config_flag(p)
    p.set_defaults(func=cmd_index)


def _add_watch(sub: argparse._SubParsersAction) -> None:
    from ..core.config import ExtractConfig

    p = sub.add_parser(
        "watch",
        help="keep the index in step with the image folder as files come and go",
        description="Catch up (as index --update), then follow the folder: new, changed, "
        "deleted and moved images reach the index in batches, each file once it is written.",
    )
    flags = ("data_dir", "output_dir", "model_path", "store", "device", "runtime", "workers")
    aliases = {"data_dir": ["--data"], "output_dir": ["--workdir"], "model_path": ["--model"]}
    _add_config_flags(p, ExtractConfig, flags, aliases)
    p.add_argument(
        "--poll",
        action="store_true",
        help="list the folder every 2 s instead of inotify events (network mounts: NFS, SMB)",
    )
    _add_config_flag(p)
    p.set_defaults(func=cmd_watch)


def _add_stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="per-category breakdown of an image folder")
    _add_folder(p, data_flag=True)
    _add_workdir_flag(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_stats)


def _add_rename(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rename", help="rename images into categories (rename_images.py)")
    _add_folder(p, data_flag=True)
    _add_workdir_flag(p)
    p.add_argument("--categories", help="comma-separated names; without it, asks")
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.add_argument("--undo", action="store_true", help="reverse the last rename")
    p.add_argument(
        "--recover", action="store_true", help="finish (or roll back) an interrupted rename"
    )
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_rename)


def _add_search(sub: argparse._SubParsersAction) -> None:
    from ..core.config import SearchConfig

    p = sub.add_parser("search", help="find the images most similar to IMAGE")
    p.add_argument("image", help="query image file")
    _add_config_flags(
        p,
        SearchConfig,
        ("top_k", "threshold", "workdir", "store", "device", "runtime"),
        {"top_k": ["-k", "--top-k"]},
    )
    p.add_argument("--json", action="store_true", help="print the /search JSON response")
    p.add_argument(
        "--category",
        action="append",
        metavar="NAME",
        help="only images of this category (repeat for several)",
    )
    _add_config_flag(p)
    p.set_defaults(func=cmd_search)


def _add_tune_threshold(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune-threshold",
        help="recompute a model's default similarity threshold on its validation images",
    )
    from ..core.config import ThresholdConfig

    _add_folder(p)
    _add_config_flags(
        p, ThresholdConfig, aliases={"data_dir": ["--data"], "model_path": ["--model"]}
    )
    _add_workdir_flag(p)
    p.set_defaults(func=cmd_tune_threshold)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from ..core.config import SearchConfig

    p = sub.add_parser("serve", help="start the web page and JSON API (app_triplet.py)")
    _add_server_flags(p)
    flags = ("workdir", "store", "device", "runtime", "watch", "watch_poll")
    _add_config_flags(p, SearchConfig, flags, {"watch_poll": ["--poll"]})
    p.add_argument(
        "--workers",
        type=_at_least(0),
        default=0,
        help="gunicorn worker processes (0 = one per core)",
    )
    p.add_argument("--threads", type=_at_least(0), default=0, help="threads per worker (0 = 4)")
    p.add_argument(
        "--dev", action="store_true", help="Flask's one-process development server instead"
    )
    p.add_argument("--debug", action="store_true", help="Flask debug mode (loopback only)")
    _add_config_flag(p)
    p.set_defaults(func=cmd_serve)


def _add_export(sub: argparse._SubParsersAction) -> None:
    from ..core.config import SearchConfig

    p = sub.add_parser(
        "export", help="the embedding network as ONNX (mobile deployment), the vectors as .npy"
    )
    p.add_argument(
        "--onnx",
        nargs="?",
        const="",
        metavar="PATH",
        help=f"write the network as ONNX (default: {ONNX_FILE} beside the model file)",
    )
    p.add_argument(
        "--npy",
        action="store_true",
        help="write triplet_features.npy and triplet_images.npy (exports, never read back)",
    )
    p.add_argument("--model", help=f"model file (default WORKDIR/{MODEL_FILE})")
    _add_config_flags(p, SearchConfig, ("workdir", "store"))
    _add_config_flag(p)
    p.set_defaults(func=cmd_export)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="sample data → train → extract → searches → server")
    p.add_argument("--dir", default="demo", help="folder for the demo's data and outputs (demo)")
    p.add_argument(
        "--per-class", type=_at_least(2), default=200, help="sample images per category (200)"
    )
    p.add_argument("--epochs", type=_at_least(1), default=8, help="training epochs (8)")
    p.add_argument("--no-serve", action="store_true", help="stop after the sample searches")
    _add_server_flags(p)
    p.set_defaults(func=cmd_demo)


def _add_duplicates(sub: argparse._SubParsersAction) -> None:
    from ..core.config import KEEP_CHOICES, DuplicatesConfig
    from ..core.config import NOT_DUPLICATES_FILE as NOT_DUPLICATES

    p = sub.add_parser(
        "duplicates",
        help="find exact and near-duplicate images (re-saved, resized, slightly cropped)",
        description="Groups of duplicate images in FOLDER, or in the index of --workdir "
        "without one. Nothing is moved or deleted; the web page moves extras to the trash.",
    )
    _add_folder(p, data_flag=True, default="the indexed collection")
    p.add_argument("--json", action="store_true", help="print the groups as JSON")
    p.add_argument(
        "--keep",
        choices=KEEP_CHOICES,
        help="keep one image per group (best: the suggested keeper, its reason shown) and "
        "move the others to the trash: with --dry-run (show what would move) or --trash",
    )
    act = p.add_mutually_exclusive_group()
    act.add_argument("--dry-run", action="store_true", help="--keep: only print the plan")
    act.add_argument(
        "--trash",
        action="store_true",
        help="--keep: move the other images to WORKDIR/trash (never deleted; imgsim trash "
        "restore NAME brings one back); without FOLDER they leave the index too",
    )
    p.add_argument("--workdir", default=".", help="folder with the model file and index (.)")
    p.add_argument(
        "--not-duplicates",
        nargs="+",
        metavar="NAME",
        help=f"remember that the images after the first are not duplicates of the first "
        f"(WORKDIR/{NOT_DUPLICATES}): never grouped again",
    )
    p.add_argument(
        "--undo-not-duplicates", nargs="+", metavar="NAME", help="forget --not-duplicates NAME..."
    )
    p.add_argument(
        "--model",
        dest="model_path",
        help="model whose embeddings confirm near duplicates (a folder: the pretrained "
        f"network; the index: WORKDIR/{MODEL_FILE})",
    )
    _add_config_flags(p, DuplicatesConfig)
    _add_store_flag(p)  # by hand: DuplicatesConfig has no store, the index's is used as is
    _add_config_flag(p)
    p.set_defaults(func=cmd_duplicates)


def _add_trash(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trash", help="removed images: list, restore or empty the trash")
    p.add_argument("--workdir", default=".", help="the work folder that holds the trash (.)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = actions.add_parser("list", help="what is in the trash, oldest first")
    q.add_argument("--json", action="store_true", help="print JSON")
    q = actions.add_parser("restore", help="put a file back where it was (never overwrites)")
    q.add_argument("name", help="its name (hats/a.jpg), original path, or trash id")
    q = actions.add_parser("empty", help="delete trashed files for good")
    q.add_argument(
        "--older-than", type=_at_least(0, float), metavar="DAYS", help="only those older than DAYS"
    )
    for q in actions.choices.values():  # `imgsim trash list --workdir W` works too
        q.add_argument("--workdir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_trash)


def _add_folder(
    p: argparse.ArgumentParser, data_flag: bool = False, default: str = DEFAULT_DATA_DIR
) -> None:
    """The image folder, named the same way everywhere: FOLDER or --data FOLDER."""
    text = f"image folder (default: remembered by the workdir, else {default})"
    p.add_argument("folder", nargs="?", metavar="FOLDER", help=text)
    if data_flag:  # else --data comes with the config flags
        p.add_argument("--data", "--data-dir", dest="data_dir", metavar="DIR", help=text)


def _add_workdir_flag(p: argparse.ArgumentParser) -> None:
    if not any("--workdir" in a.option_strings for a in p._actions):
        p.add_argument("--workdir", default=".", help="the work folder that remembers it (.)")


def _one_folder(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """FOLDER and --data are one setting: either may name it, both only alike."""
    if not hasattr(args, "folder"):
        return
    data = getattr(args, "data_dir", None)
    if args.folder is not None and data is not None and Path(args.folder) != Path(data):
        parser.error(f"two image folders named: {args.folder} and --data {data}; name one")
    args.data_dir = args.folder = args.folder if args.folder is not None else data


def _add_config_flag(p: argparse.ArgumentParser) -> None:
    # SUPPRESS keeps `imgsim --config F train` working: the subcommand must not reset it.
    p.add_argument("--config", default=argparse.SUPPRESS, help="settings file (.toml/.yaml/.json)")


def _add_store_flag(p: argparse.ArgumentParser) -> None:
    from ..core.config import STORE_HELP

    p.add_argument("--store", metavar=STORE_HELP["metavar"], help=STORE_HELP["help"])


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=_at_least(0), default=5000, help="port (5000)")


class _Parser(argparse.ArgumentParser):
    """Says what is wrong in one line (the usage it would print first hides it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _at_least(low: float, parse: type = int) -> Callable[[str], float]:
    """A flag type for numbers not from a config dataclass: `low` or more."""

    def number(text: str) -> float:
        value = parse(text)  # ValueError: argparse says "invalid int value"
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low:g} or more, not {value:g}")
        return value

    number.__name__ = parse.__name__
    return number


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; building it imports nothing heavy, so --help is instant."""
    from .. import __version__

    parser = _Parser(
        prog="imgsim",
        description="Image similarity search: organise, train, extract, search, serve.",
    )
    parser.add_argument("--version", action="version", version=f"imgsim {__version__}")
    parser.add_argument("--config", help="settings file (.toml, .yaml or .json)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # In the order a new user runs them: try, organise, train, index, use, maintain.
    for add in (
        _add_demo, _add_stats, _add_rename, _add_train, _add_extract, _add_index, _add_watch,
        _add_search,
        _add_duplicates, _add_serve, _add_tune_threshold, _add_export, _add_trash,
    ):  # fmt: skip
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `imgsim` command; returns the exit code."""
    from ..core import interrupt

    if argv is None:  # the `imgsim` program itself, not a caller in Python (a test)
        interrupt.stop_on_sigterm()
    parser = build_parser()
    args = parser.parse_args(argv)
    _one_folder(parser, args)
    setup_logging(args.quiet)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ImgsimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"error: file not found: {exc.filename or exc}", file=sys.stderr)
        return 1
    except (OSError, sqlite3.Error) as exc:
        # A full disk or a read-only folder met anywhere: one line, not a traceback. Files
        # are written whole or not at all and the index in one transaction.
        problem = storage_error(exc, "the command stopped; what it was writing was not kept")
        if problem is None:
            raise
        print(f"error: {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:  # Ctrl+C, or SIGTERM (interrupt.stop_on_sigterm)
        if argv is None:  # the program, not a caller in Python
            interrupt.ignore_more()
        interrupt.report(sys.argv[1:] if argv is None else argv)
        return interrupt.exit_status(stop)


if __name__ == "__main__":
    raise SystemExit(main())
