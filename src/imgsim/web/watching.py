"""serve --watch: what a server's folder watcher indexes with, where it runs, what /health says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.config import MODEL_FILE, ExtractConfig, SearchConfig
from ..core.errors import EmbeddingsNotLoadedError


def start_watching(config: SearchConfig) -> None:
    """Offer to watch from a thread of this server process (it watches if it gets the lock)."""
    from ..embed.watch import watch_in_background

    watch_in_background(lambda: watch_config(config), config.watch_poll)


def start_watching_here(config: SearchConfig) -> None:
    """Watch from this process's main thread, taking the lock when it is free; never returns."""
    from ..embed.watch import keep_watching

    keep_watching(lambda: watch_config(config), config.watch_poll)


def watch_config(config: SearchConfig) -> ExtractConfig:
    """What the watcher indexes with: the collection's folder, the workdir's model and store."""
    from ..model.modelfile import read_model_meta
    from ..store import open_store

    model_path = Path(config.workdir) / MODEL_FILE
    model_id = read_model_meta(model_path)["model_id"]
    with open_store(config.workdir, config.store or None, model_id) as store:
        info = store.info()
    if info is None:
        raise EmbeddingsNotLoadedError(
            f"serve --watch: no index in {config.workdir} yet, so no folder to watch — "
            "run imgsim index --data FOLDER first (or imgsim watch --data FOLDER)"
        )
    return ExtractConfig(
        data_dir=info.data_dir, output_dir=config.workdir, model_path=str(model_path),
        store=config.store, device=config.device, runtime=config.runtime,
    )  # fmt: skip


def watcher_health(config: SearchConfig) -> dict[str, Any] | None:
    """/health's `watcher`: None unless this server watches or some process watches its workdir."""
    from ..embed.watch import watch_status, watcher_running

    if not (config.watch or watcher_running(config.workdir)):
        return None
    return watch_status(config.workdir)
