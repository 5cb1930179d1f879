"""Every default in one place: typed config dataclasses, config-file loading and flag overrides."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

# File names kept from the original so its users find their outputs where they expect them.
MODEL_FILE = "triplet_base_final.pt"
FEATURES_FILE = "triplet_features.npy"
IMAGES_FILE = "triplet_images.npy"
INDEX_META_FILE = "triplet_index.json"
FAISS_INDEX_FILE = "triplet_index.faiss"  # the vector index (FAISS's own file format)
MANIFEST_FILE = "triplet_manifest.sqlite"  # one row per indexed image (SQLite)
HISTORY_PLOT = "training_history.png"
RELIABILITY_PLOT = "similarity_calibration.png"  # how well the scores shown match reality
EMBEDDING_PLOT = "triplet_embedding_space.png"
TRAIN_CONFIG_FILE = "training_config.json"
CHECKPOINT_DIR = "checkpoints"
STAGING_DIR = ".imgsim-staging"  # uploads wait here (in the workdir) until they are indexed
TRASH_DIR = "trash"  # removed images wait here (imgsim trash list | restore | empty)
TRASH_JOURNAL = "trash.jsonl"  # inside TRASH_DIR: where each trashed file came from
# The embedding network in ONNX (`imgsim export --onnx`), written next to the model file.
ONNX_FILE = "triplet_base_final.onnx"
THUMBNAIL_CACHE_DIR = "thumbnail_cache"  # decoded inputs kept by `extract --thumbnail-cache`
MAP_FILE = "collection_map.json"  # the page's map: 2-D projection of the collection (JSON)
MAP_LOCK_FILE = "collection_map.lock"  # held by the one process computing the map
DUPLICATES_FILE = "duplicates.json"  # the duplicate groups the server found last (JSON)
DUPLICATES_LOCK_FILE = "duplicates.lock"  # held by the one process finding duplicates
# Image pairs a person said are not duplicates: {"pairs": [[name, name], ...]}, names sorted.
NOT_DUPLICATES_FILE = "not_duplicates.json"
# Each judged candidate pair of duplicates, by the two images' content and the judge's
# settings (NumPy .npz, written atomically), so a run over an unchanged collection judges none.
VERDICTS_FILE = "duplicate_verdicts.npz"
WATCH_LOCK_FILE = "watch.lock"  # held by the one process watching the image folder
WATCH_STATUS_FILE = "watch_status.json"  # what the watcher last did (JSON), for /health
MAP_METHODS = ("tsne", "pca")  # how the map projects embeddings to 2-D
RUNTIMES = ("torch", "onnx")  # what runs the network: PyTorch eager or onnxruntime
DEFAULT_DATA_DIR = "static/dataset"
# In the workdir: the image folder, model file and store its commands named (workfolder.py),
# so that later commands there need no flags.
WORKFOLDER_FILE = "imgsim_workdir.json"
# The environment variable naming the web app's config file (TOML/YAML/JSON): its [search]
# and [duplicates] sections apply in every server process.
ENV_CONFIG = "IMGSIM_CONFIG"
DEFAULT_IMAGE_SIZE = 64  # the network's input side for photos (image_size 0 picks it)
# Similarity (percent of the cosine) a near copy of the query reaches: the model's tuned
# default threshold is never above it, so it never hides one (a resized or re-encoded copy
# reads 99 % or more).
NEAR_COPY_SIMILARITY = 90.0
# Results per search, for the CLI and the API alike; the page offers the original's 5-50.
TOP_K_RANGE = (1, 100)
PAGE_TOP_K_RANGE = (5, 50)
# How often the search page asks /health whether the folder watcher is following the folder:
# a copied photo shows up in the page's counts about as soon as it is searchable (~1 s).
PAGE_WATCH_REFRESH_SECONDS = 2.0


def choices(values: tuple[str, ...], help: str) -> dict[str, Any]:
    """Field metadata: the values a setting accepts and its help (for the generated CLI flags)."""
    return {"choices": values, "help": help}


# Help of settings several commands share (their generated flags show it).
DEVICE_HELP = "where the network runs; auto: a GPU if there is one (cpu works everywhere)"
RUNTIME_HELP = "what runs the network: torch (PyTorch) or onnx (onnxruntime)"
STORE_HELP = {
    "help": 'milvus://HOST:PORT for a Milvus server; "": IMGSIM_STORE, else the embedded '
    "FAISS store in the workdir",
    "metavar": "ADDRESS",
}
ENGINES = ("local", "ray")


LOSSES = ("multisimilarity", "triplet", "proxyanchor", "normsoftmax", "arcface")
MINERS = ("auto", "semihard", "hard", "multisimilarity", "all")
SAMPLERS = ("m_per_class", "random")
DEVICES = ("cpu", "auto", "cuda", "mps")
LR_SCHEDULES = ("cosine", "constant")
TEST_FLIPS = ("auto", "on", "off")
BACKBONES = ("auto", "efficientnet-lite0", "scratch")
PRETRAINED = "efficientnet-lite0"  # the bundled ImageNet network (backbone.py)


@dataclass
class ModelConfig:
    """Shape of the embedding network; stored in the model file so it can be rebuilt."""

    # scratch: 224 (the original) is ~12x slower on a CPU than 64; 28 px images gain nothing.
    # efficientnet-lite0: see autosize.PRETRAINED_SIZE.
    image_size: int = 0  # input side in px; 0 = auto: from the images and the backbone
    embedding_dim: int = 128  # embedding dimension, as the original
    widths: tuple[int, ...] = (16, 32, 64, 128)  # channels per stage, e.g. 32,64,128,256
    blocks: tuple[int, ...] = (1, 1, 1, 1)  # residual blocks per stage: the depth
    head_hidden: int = 256  # hidden width of the projection head (0: no head, features as is)
    # Measured on Fashion-MNIST (docs/benchmarks.md): MAP@R +0.005 to +0.011 for networks
    # trained on flipped images, -0.024 for one trained without; each image costs two passes.
    test_flip: str = field(
        default="auto",
        metadata=choices(
            TEST_FLIPS,
            "embed each image and its mirror image, averaged, once trained; auto: on when the "
            "training flipped images (augmentation or --flip)",
        ),
    )
    backbone: str = field(
        default="auto",
        metadata=choices(
            BACKBONES,
            "the network under the head: efficientnet-lite0 (ImageNet-pretrained, frozen; its "
            "features are computed once per image and view, and the head trains on them) or "
            "scratch (a small CNN trained end to end); auto: scratch for small images (a median "
            "side under 64 px, e.g. Fashion-MNIST), else efficientnet-lite0",
        ),
    )


@dataclass
class TrainConfig:
    """Training settings; the final values are written next to the outputs."""

    data_dir: str = DEFAULT_DATA_DIR  # image folder, one category per name prefix or sub-folder
    output_dir: str = "."  # model file, plot and checkpoints; the original used the cwd
    # The run's length comes from the collection, never from measured speed: the same folder
    # and flags give the same model on a laptop and on a GPU.
    epochs: int = 0  # 0 = auto: about auto_images_seen images, at most max_auto_epochs
    # 650,000: 12 epochs on 54,000 images, where mirroring and label smoothing keep gaining
    # (8 epochs without them overfit; docs/benchmarks.md, "Regularising the large folder").
    auto_images_seen: int = 650_000  # auto epochs: training images to show the network in all
    max_auto_epochs: int = 100  # auto epochs stop here: tiny folders gain nothing from more
    time_budget_min: float = 0.0  # stop early after this many minutes (0 = off); says so
    batch_size: int = 64  # images per step over all processes (the original: 48)
    steps_per_epoch: int = 0  # 0 = one pass over the training images per epoch
    learning_rate: float = 1e-3  # Adam; the original's 1e-4 learns ~3x slower here
    lr_schedule: str = field(
        default="cosine", metadata=choices(LR_SCHEDULES, "cosine decays to 0 by the last epoch")
    )
    # Normalized softmax measured the best P@1 in all three regimes of benchmarks/quality.py
    # (docs/benchmarks.md, "Retrieval quality" and "The loss on all 60,000").
    loss: str = field(
        default="normsoftmax", metadata=choices(LOSSES, "pytorch-metric-learning loss")
    )
    margin: float = 0.2  # margin of the triplet loss and of the semihard miner
    mining: str = field(
        default="auto",
        metadata=choices(
            MINERS,
            "miner choosing the pairs or triplets the loss sees; auto: the loss's own "
            "(semihard for triplet, multisimilarity for multisimilarity, none for the proxy "
            "losses); all: no miner",
        ),
    )
    sampler: str = field(
        default="m_per_class",
        metadata=choices(SAMPLERS, "batches of m_per_class images per category, or random"),
    )
    m_per_class: int = 4  # images of one category per batch (m_per_class sampler)
    val_fraction: float = 0.1  # held out per category for validation loss, Recall@1, threshold
    checkpoint_every: int = 5  # epochs between checkpoints, as the original
    seed: int = 0  # same folder, settings, seed and threads: the same model
    threads: int = 0  # CPU threads per process; 0 = torch's default (results depend on it)
    augment: bool = False  # random crop/scale, flip, colour jitter, whatever the folder's size
    # Small folders need augmentation most; on all of Fashion-MNIST it measured worse.
    augment_below: int = 1000  # also augment below this many training images per category
    flip: bool = True  # also mirror half the images at random where the run does not augment
    device: str = field(
        default="cpu", metadata=choices(DEVICES, "where to train; auto: a GPU if there is one")
    )
    mixed_precision: bool = True  # bf16/fp16 autocast on a GPU (the CPU always runs fp32)
    workers: int = 0  # decode processes; 0 = one per CPU core, at most 8
    cache_mb: int = 0  # decoded images each decode process keeps, in MB; 0 = off
    proxy_lr_scale: float = 100.0  # proxy losses: the proxies' learning rate over the network's
    weight_decay: float = 0.0  # AdamW's decoupled weight decay of the network's weights
    # Raised MAP@R in all three regimes of benchmarks/quality.py (+0.02 to +0.06 on a GPU).
    label_smoothing: float = 0.1  # normsoftmax, arcface: share of each target spread evenly
    # Early stopping: "below the best" means by more than the held-out set's noise (stopping.py).
    early_stop: bool = True  # stop when validation Recall@1 stays below its best or the loss is 0
    validate_every: int = 0  # epochs between validations; 0 = auto, about a tenth of the time
    patience: int = 0  # epochs below the best Recall@1 before stopping; 0 = a fifth of the run
    # Scores shown are calibrated probabilities of the same category (held-out images).
    threshold_precision: float = 0.8  # default threshold: top-10 results this often right
    # Nothing is downloaded: a file you have (state_dict, imgsim model file or checkpoint).
    init_weights: str = ""  # start from these weights where names and shapes match


@dataclass
class ThresholdConfig:
    """`imgsim tune-threshold`: recompute a model's default threshold on its validation images."""

    data_dir: str = DEFAULT_DATA_DIR  # image folder the model was trained on
    model_path: str = MODEL_FILE  # model file to read and update
    workers: int = 0  # decode processes; 0 = one per CPU core, at most 8
    precision: float = 0.8  # the default threshold keeps top-k results this often right
    top_k: int = 10  # results per search the precision is measured on (search's default)


@dataclass
class ExtractConfig:
    """Embedding extraction settings."""

    data_dir: str = DEFAULT_DATA_DIR  # image folder to embed
    # `imgsim index --workdir DIR` sets it, and reads DIR's model file unless --model is given.
    output_dir: str = "."  # folder of the index files (index --workdir: and of the model file)
    model_path: str = MODEL_FILE  # model file to embed with (index --workdir DIR: DIR's)
    batch_size: int = 64  # images per forward pass (and per chunk a worker takes)
    # Identical processes that each decode and embed their chunks, one runtime thread each;
    # 0 = one per core (the parent only collects the results in order).
    workers: int = 0  # processes that decode and embed; 0 = one per core, at most 8
    plot: bool = False  # also write triplet_embedding_space.png (t-SNE)
    store: str = field(default="", metadata=STORE_HELP)
    device: str = field(default="cpu", metadata=choices(DEVICES, DEVICE_HELP))
    engine: str = field(
        default="local",
        metadata=choices(
            ENGINES,
            "local: this process and its decode workers; ray: Ray Data actors, on this machine "
            "or the cluster RAY_ADDRESS names (pip install 'imgsim[scale]')",
        ),
    )
    engine_concurrency: int = 0  # Ray actors; 0 = one per CPU Ray offers
    shard: str = field(
        default="",
        metadata={
            "help": "embed only the K-th of N disjoint parts of the folder into the shared "
            'store (run K = 1..N on N machines against one Milvus); "": all of it',
            "metavar": "K/N",
        },
    )
    # onnxruntime embedded 1.7-7x faster than PyTorch eager at batch 1 and 64, and extracted
    # 1.9x faster (docs/benchmarks.md, "Runtime speed", "Extraction speed").
    runtime: str = field(default="onnx", metadata=choices(RUNTIMES, RUNTIME_HELP))
    # Off by default: it costs 3×size² bytes per image; re-embedding after retraining (same
    # image size) skips decoding.
    thumbnail_cache: bool = False  # keep decoded inputs in OUTPUT_DIR/thumbnail_cache
    # No training needed: search, duplicates and the map of any folder, labelled or not.
    pretrained: bool = field(
        default=False,
        metadata={
            "help": "embed with the bundled ImageNet network (EfficientNet-Lite0), untrained on "
            "your folder: written as the model file where there is none yet"
        },
    )


@dataclass
class SearchConfig:
    """Search settings shared by the CLI and the web server."""

    workdir: str = "."  # folder with the model file and the index
    store: str = field(default="", metadata=STORE_HELP)
    device: str = field(default="cpu", metadata=choices(DEVICES, DEVICE_HELP))
    top_k: int = 10  # results per search
    threshold: float = -1.0  # minimum similarity in percent; -1: the model's tuned threshold
    max_image_bytes: int = 10 * 1024 * 1024  # uploads larger than this are refused (413)
    # Declared size, a bound on decoding time (imgsim.images.data.DEFAULT_MAX_PIXELS, 16,384²);
    # memory is max_decode_mb's, counted at the size decoded (JPEGs decode shrunk).
    max_image_pixels: int = 16384 * 16384
    # Memory one decoded image may take (pixels x bands x bytes per sample, from its header);
    # more is refused (400). 96 MB: RGB up to 25 M pixels (Pillow keeps 4 bytes a pixel),
    # 16-bit grey up to the pixel limit; JPEGs decode shrunk, so only large lossless images
    # meet it. With 2 decodes at once, 8 worst-case uploads at once stay under 300 MB per
    # process (docs/benchmarks.md).
    max_decode_mb: int = 96
    # Decodes at once per server process; more wait. Peak decode memory ~ this x max_decode_mb
    # (large images are decoded once, then box-reduced to what the model needs).
    max_concurrent_decodes: int = 2
    max_batch_files: int = 16
    request_timeout: float = 30.0  # seconds a client may take to send a request (408 after)
    # Bearer token for POST /images and DELETE /images/<name>; "" turns them off. IMGSIM_TOKEN
    # wins over it. Out of repr so a logged config never shows it.
    admin_token: str = field(default="", repr=False)
    # IMGSIM_RUNTIME wins over it in the web app; onnx measured faster.
    runtime: str = field(default="onnx", metadata=choices(RUNTIMES, RUNTIME_HELP))
    # Micro-batching: concurrent queries of one process share a forward pass. At most this
    # many images per pass; 1 turns batching off (each request runs its own pass).
    batch_max_size: int = 32
    # How long a pass may wait for queries that are already being decoded. It never waits
    # when no other request is on its way, so a lone client pays nothing for it.
    batch_max_wait_ms: float = 2.0
    # Threads of the runtime in each process that searches; 0 = its own default (one per
    # core; under `imgsim serve`, each worker's share of the cores). gunicorn's worker
    # processes are the parallelism: several threads each would fight over the same cores,
    # and measured far slower on a shared machine.
    runtime_threads: int = 1
    # The map page (GET /map): at most this many images, each category keeping its share.
    # t-SNE took 131 s for 5,000 points on one busy core (docs/benchmarks.md, "Map
    # projection"); it runs once per change of the collection, in the background.
    map_points: int = 5000
    map_method: str = field(
        default="tsne",
        metadata=choices(MAP_METHODS, "tsne keeps neighbourhoods; pca is linear and instant"),
    )
    map_seed: int = 0  # the same collection, settings and seed: the same map
    # One server process (whichever holds WATCH_LOCK_FILE) follows the image folder, so a
    # file copied in becomes searchable without an upload or index --update.
    watch: bool = field(
        default=False,
        metadata={"help": "also follow the indexed image folder (one process watches it)"},
    )
    watch_poll: bool = field(
        default=False,
        metadata={"help": "watch by listing the folder every 2 s, not inotify (NFS, SMB mounts)"},
    )


@dataclass
class Config:
    """All components' settings, as read from a TOML, YAML or JSON file."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    # Defined further down; the factory runs only when a Config is made.
    duplicates: DuplicatesConfig = field(default_factory=lambda: DuplicatesConfig())


T = TypeVar("T")


def replace(obj: T, values: dict[str, Any]) -> T:
    """Return a copy of a config dataclass with `values` applied, checking names and types."""
    known = {f.name: f for f in fields(obj)}  # type: ignore[arg-type]
    clean: dict[str, Any] = {}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key not in known:
            raise ConfigError(f"unknown setting {key!r}; known: {', '.join(sorted(known))}")
        if value is None:
            continue
        clean[key] = _coerce(getattr(obj, key), value, key)
        check_range(type(obj), key, clean[key])
    return dataclasses.replace(obj, **clean)  # type: ignore[type-var]


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _coerce(default: Any, value: Any, key: str) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                word = value.strip().lower()
                if word not in _TRUE | _FALSE:
                    raise ValueError("expected true/false, yes/no, on/off or 1/0")
                return word in _TRUE
            return bool(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else value
            return tuple(int(v) for v in items)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad value {value!r} for {key}: {exc}") from None


# Numeric settings accept 0 and more unless listed here as (lowest, highest); None: no bound.
LIMITS: dict[str, tuple[float | None, float | None]] = {
    "ModelConfig.embedding_dim": (1, None),
    "ModelConfig.widths": (1, None),
    "ModelConfig.blocks": (1, None),
    "TrainConfig.auto_images_seen": (1, None),
    "TrainConfig.max_auto_epochs": (1, None),
    "TrainConfig.batch_size": (2, None),  # a pair at least: the loss compares images
    "TrainConfig.m_per_class": (1, None),
    "TrainConfig.val_fraction": (0, 0.9),
    "TrainConfig.checkpoint_every": (1, None),
    "TrainConfig.label_smoothing": (0, 0.99),
    "TrainConfig.threshold_precision": (0, 1),
    "ThresholdConfig.precision": (0, 1),
    "ThresholdConfig.top_k": TOP_K_RANGE,
    "ExtractConfig.batch_size": (1, None),
    "SearchConfig.top_k": TOP_K_RANGE,
    "SearchConfig.threshold": (-1, 100),  # percent; -1: the model's tuned threshold
    "SearchConfig.max_image_bytes": (1, None),
    "SearchConfig.max_image_pixels": (1, None),
    "SearchConfig.max_decode_mb": (1, None),
    "SearchConfig.max_concurrent_decodes": (1, None),
    "SearchConfig.max_batch_files": (1, None),
    "SearchConfig.batch_max_size": (1, None),
    "SearchConfig.map_points": (2, None),
    "DuplicatesConfig.threshold": (0, 64),  # bits of a 64-bit hash
    "DuplicatesConfig.embedding_threshold": (-1, 1),  # a cosine
}


def range_problem(cls: type, name: str, value: Any) -> str | None:
    """What is wrong with a numeric setting's value ("must be 0 or more, not -1"), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float | tuple):
        return None
    low, high = LIMITS.get(f"{cls.__name__}.{name}", (0, None))
    for v in value if isinstance(value, tuple) else (value,):
        if (low is not None and v < low) or (high is not None and v > high) or v != v:
            wanted = f"between {low:g} and {high:g}" if high is not None else f"{low:g} or more"
            return f"must be {wanted}, not {v:g}"
    return None


def check_range(cls: type, name: str, value: Any) -> None:
    """Refuse a numeric setting out of its range (LIMITS) with a one-line ConfigError."""
    problem = range_problem(cls, name, value)
    if problem:
        raise ConfigError(f"{name} {problem}")


def load_config(path: str | Path | None) -> Config:
    """Read a config file (.toml, .yaml/.yml or .json): sections model/train/extract/search/...."""
    config = Config()
    if path is None:
        return config
    data = _read_mapping(Path(path))
    for section, values in data.items():
        if section not in {f.name for f in fields(config)}:
            raise ConfigError(f"unknown section [{section}] in {path}")
        if not isinstance(values, dict):
            raise ConfigError(f"section [{section}] in {path} must be a table of settings")
        setattr(config, section, replace(getattr(config, section), values))
    return config


def _read_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in {".yaml", ".yml"}:
            import yaml

            try:
                data = yaml.safe_load(text) or {}
            except yaml.YAMLError as exc:  # not a ValueError, so caught here
                raise ConfigError(f"cannot parse {path}: {exc}") from None
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file must be .toml, .yaml, .yml or .json: {path}")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"cannot parse {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold sections of settings")
    return data


def to_dict(obj: Any) -> dict[str, Any]:
    """A plain dict of a config dataclass (tuples become lists), for JSON and model files."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Rebuild a config dataclass from `to_dict` output, ignoring keys it does not know."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return replace(cls(), {k: v for k, v in values.items() if k in known})


DUPLICATE_METHODS = ("confirmed", "hash", "embedding", "both")
DUPLICATES_SORTS = ("size", "date")  # the review page's orders: the most images, the newest
# Groups per review page: a screenful of thumbnails; a client may ask for up to the maximum.
DUPLICATES_PER_PAGE = 20
DUPLICATES_MAX_PER_PAGE = 200
KEEP_CHOICES = ("best",)  # imgsim duplicates --keep: the suggested keeper (groups.keeper_key)


@dataclass
class DuplicatesConfig:
    """`imgsim duplicates` and GET /duplicates: exact and near-duplicate images."""

    method: str = field(
        default="confirmed",
        metadata=choices(
            DUPLICATE_METHODS,
            "confirmed: hashes of 8 turns and mirrors, and embedding neighbours, propose; "
            "the embeddings and the aligned pixels confirm; hash: perceptual hash alone (no "
            "model); embedding: the model's vectors alone; both: a pair hash or embedding finds",
        ),
    )
    # Measured on planted copies of real images by benchmarks/duplicates.py
    # (docs/benchmarks.md, "Duplicates").
    threshold: int = field(
        default=12,
        metadata={
            "help": "at most this many of the 64 perceptual-hash bits differ (confirmed: "
            "proposes a pair, in any turn or mirror; hash: decides)"
        },
    )
    embedding_threshold: float = field(
        default=0.8,
        metadata={
            "help": "cosine similarity of the embeddings at least this (confirmed: of the "
            "pretrained network's, in the matching turn, 0.2 less where the hashes are within "
            "4 bits; embedding: less their mean)"
        },
    )
    pixel_threshold: float = field(
        default=0.97,
        metadata={
            "help": "confirmed method: the two images' 32-px colour thumbnails, turned and "
            "cropped to line up, correlate at least this"
        },
    )
    workers: int = 0  # decode-and-hash processes; 0 = one per core, at most 8
