"""Following the image folder as it changes: file events batched into incremental index updates."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from ..core.config import WATCH_LOCK_FILE, WATCH_STATUS_FILE, ExtractConfig
from ..core.errors import ImgsimError
from ..core.fileio import write_text_atomic
from ..images.data import IMAGE_EXTENSIONS
from ..model.embedder import Embedder

log = logging.getLogger("imgsim")

# A burst of events (a copy of many files) is gathered this long before a batch is planned.
DEBOUNCE_SECONDS = 0.2
# A file is read once its size and modification time have stayed the same this long: a
# copy still being written is left for a later batch, never read half-done.
SETTLE_SECONDS = 0.5
# A file moved out is reported after this long (watchdog's default pairing wait: 0.5 s).
MOVE_PAIRING_SECONDS = 0.05
POLL_SECONDS = 2.0  # --poll: how often the polling observer lists the folder
BAD_LISTED = 20  # unreadable files named in the status file (all are named once in the log)
# New images' duplicate data is derived after their batch, this many at a time while no event
# waits: 1,000 take about 2 s, which a file moved out meanwhile would otherwise wait for.
DUPLICATE_DATA_CHUNK = 100


class WatchLockHeld(ImgsimError, RuntimeError):
    """Another process already watches this workdir's folder."""


class WatchLock:
    """An exclusive lock on WORKDIR/watch.lock: one watcher per workdir, released at death."""

    def __init__(self, workdir: str | Path) -> None:
        self.path = Path(workdir) / WATCH_LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        """Take the lock if it is free; True when this process now holds it."""
        # Kept open while held, and locked in place: never replaced (a file renamed over it
        # would be a new inode, so a second watcher could lock that one too).
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115  # not an output: a lock
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None


def watcher_running(workdir: str | Path) -> bool:
    """Whether some process (this one included) holds the watch lock of `workdir`."""
    path = Path(workdir) / WATCH_LOCK_FILE
    if not path.exists():
        return False
    probe = WatchLock(workdir)
    if probe.acquire():  # free: nobody watches (released at once)
        probe.release()
        return False
    return True


def watch_status(workdir: str | Path) -> dict[str, Any]:
    """What /health reports: whether a watcher runs, its last change and pending files."""
    status: dict[str, Any] = {"running": watcher_running(workdir)}
    try:
        kept = json.loads((Path(workdir) / WATCH_STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        kept = {}
    if isinstance(kept, dict):
        status.update({k: v for k, v in kept.items() if k != "running"})
    if not status["running"]:
        status["pending"] = 0  # a dead watcher's pending files are caught up at its restart
    return status


def _is_image_name(name: str) -> bool:
    parts = name.split("/")
    hidden = any(p.startswith(".") for p in parts)
    return not hidden and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


class _Events:
    """Collects watchdog's events as dataset names; thread-safe."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.names: set[str] = set()
        self.rescan = False  # a folder moved or vanished: the next batch runs regardless
        self.wake = threading.Event()

    def dispatch(self, event: Any) -> None:  # watchdog's handler interface
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path, getattr(event, "dest_path", "") or ""]
        with self.lock:
            for path in filter(None, paths):
                name = os.path.relpath(os.fsdecode(path), self.root).replace(os.sep, "/")
                if name.startswith(".."):
                    continue
                if event.is_directory:
                    self.rescan = self.rescan or event.event_type in ("moved", "deleted")
                elif _is_image_name(name):
                    self.names.add(name)
        self.wake.set()

    def take(self) -> tuple[set[str], bool]:
        with self.lock:
            names, rescan = self.names, self.rescan
            self.names, self.rescan = set(), False
        return names, rescan


def _signature(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of a file, None when it is gone."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class FolderWatcher:
    """Watches `config.data_dir` and applies its changes to the index in batches.

    Every batch is an incremental update (`update_pass`, the path of `index --update`), so
    new, changed, deleted and moved files reach the store as they would there, in one atomic
    change that every server process sees. Files still being written are left for a later
    batch; a file that does not decode is named once and tried again only when it changes.
    """

    def __init__(self, config: ExtractConfig, poll: bool = False) -> None:
        self.config = config
        self.poll = poll
        self.root = Path(config.data_dir).resolve()
        self.workdir = Path(config.output_dir)
        self.events = _Events(self.root)
        self.waiting: dict[str, tuple[tuple[int, int] | None, float]] = {}  # name: (sig, since)
        self.bad: dict[str, tuple[int, int] | None] = {}  # unreadable files, by their signature
        self.underived: dict[str, None] = {}  # added, duplicate data not yet kept (in order)
        self.last_change: float | None = None
        self.error = ""
        self._stop = threading.Event()
        self._observer: Any = None
        self._store: Any = None
        self._model: Any = None
        self._embedder: Embedder | None = None
        self._thread: threading.Thread | None = None
        self._status: dict[str, Any] = {}
        self.lock = WatchLock(self.workdir)

    def start(self) -> None:
        """Take the workdir's watch lock (WatchLockHeld if another process has it), catch up
        on what changed while nobody watched, then follow the folder."""
        if not self.lock.acquire():
            raise WatchLockHeld(
                f"another process already watches for {self.workdir} (its pid is in "
                f"{self.lock.path}); one watcher per workdir"
            )
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self._observer = self._make_observer()
        self._observer.start()  # before the catch-up: nothing that happens during it is lost
        self._catch_up()
        self._thread = threading.Thread(target=self._loop, name="imgsim-watch", daemon=True)
        self._thread.start()
        kind = "polling" if self.poll else "inotify"
        log.info("Watching %s (%s) for the index in %s", self.root, kind, self.workdir)

    def stop(self) -> None:
        self._stop.set()
        self.events.wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        if self._store is not None:
            self._store.close()
            self._store = None
        self.lock.release()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the watcher stops (Ctrl-C in `imgsim watch`)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _make_observer(self) -> Any:
        if self.poll:
            from watchdog.observers.polling import PollingObserver

            observer = PollingObserver(timeout=POLL_SECONDS)
        else:
            from watchdog.observers import Observer

            _pair_moves_quickly()
            observer = Observer()
        observer.schedule(self.events, str(self.root), recursive=True)  # type: ignore[arg-type]
        return observer

    def _catch_up(self) -> None:
        from ..model.model_handle import ModelFile
        from ..store import open_store
        from .update import update_index

        result = update_index(self.config, update=True, progress=False)
        self._remember_bad(result.failed)
        if result.late:
            log.info(
                "watch: %d files changed during the batch; the next batch takes them", result.late
            )
        if result.embedded or result.removed or result.reused:
            self.last_change = time.time()
        self._model = ModelFile(self.config.model_path)
        self._store = open_store(self.workdir, self.config.store or None, self._model.model_id)
        self._write_status()

    def _runtime(self) -> Embedder:
        """The runtime, built at the first batch that embeds and kept for the next ones."""
        if self._embedder is None:
            from .extract import extract_embedder

            self._embedder = extract_embedder(self._model, self.config)
        return self._embedder

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.underived and not self.waiting and not self.events.wake.is_set():
                self._keep_duplicate_data()  # the indexing is done: now, while nothing waits
                continue
            self.events.wake.wait(SETTLE_SECONDS / 2 if self.waiting else None)
            if self._stop.is_set():
                return
            self.events.wake.clear()
            time.sleep(DEBOUNCE_SECONDS)  # the rest of a burst
            names, rescan = self.events.take()
            now = time.monotonic()
            for name in names:
                self.waiting.setdefault(name, (None, now))
            ready, unsettled = self._settled(now)
            if ready or rescan:
                self._batch(unsettled)
            self._write_status()

    def _settled(self, now: float) -> tuple[set[str], set[str]]:
        """The waiting files whose size and time stood still for SETTLE_SECONDS (or that are
        gone), taken off the waiting list, and those still changing."""
        ready, unsettled = set(), set()
        for name, (old, since) in list(self.waiting.items()):
            sig = _signature(self.root / name)
            # A file not written to for SETTLE_SECONDS (moved in, copied with its time) is
            # ready at once: a move then keeps its vector, in the batch that drops the old name.
            quiet = sig is not None and time.time() - sig[1] / 1e9 >= SETTLE_SECONDS
            if sig is None or quiet or (sig == old and now - since >= SETTLE_SECONDS):
                ready.add(name)
                del self.waiting[name]
            else:
                unsettled.add(name)
                if sig != old:
                    self.waiting[name] = (sig, now)
        return ready, unsettled

    def _batch(self, unsettled: set[str]) -> None:
        from .update import update_pass

        skip = unsettled | self._still_bad()
        try:
            result = update_pass(
                self._store, self._model, self.config, skip, self._runtime, duplicate_data=False
            )
        except ImgsimError as exc:  # a model change, an unreachable Milvus: say so, keep going
            self.error = str(exc)
            log.error("watch: %s", exc)
            return
        self.error = ""
        self.underived.update(dict.fromkeys(result.added))
        self._remember_bad(result.failed)
        if result.embedded or result.removed or result.reused:
            self.last_change = time.time()

    def _keep_duplicate_data(self) -> None:
        """Derive and keep the duplicate data of the next few added images (`imgsim duplicates`
        derives what a stopped watcher left, as it does for any image without it)."""
        from .extract import keep_duplicate_data

        names = list(self.underived)[:DUPLICATE_DATA_CHUNK]
        try:
            keep_duplicate_data(self._store, self.config, names, "the batch was indexed")
        except ImgsimError as exc:  # a full disk: the finder derives them when asked
            log.warning("watch: %s", exc)
        for name in names:
            del self.underived[name]

    def _still_bad(self) -> set[str]:
        """Unreadable files not changed since they failed: not read again."""
        for name, sig in list(self.bad.items()):
            if _signature(self.root / name) != sig:
                del self.bad[name]  # changed or gone: the next batch reads it again
        return set(self.bad)

    def _remember_bad(self, names: list[str]) -> None:
        for name in names:
            self.bad[name] = _signature(self.root / name)

    def _write_status(self) -> None:
        status = {
            "pid": os.getpid(),
            "folder": str(self.root),
            "mode": "polling" if self.poll else "inotify",
            "last_change": _iso(self.last_change),
            "pending": len(self.waiting),
            "unreadable": sorted(self.bad)[:BAD_LISTED],
            "error": self.error,
        }
        if status != self._status:  # written when something changed, not on every wake
            self._status = status
            try:
                write_text_atomic(self.workdir / WATCH_STATUS_FILE, json.dumps(status) + "\n")
            except OSError as exc:
                log.warning("watch: cannot write %s: %s", WATCH_STATUS_FILE, exc)


def _pair_moves_quickly() -> None:
    """Hand on a file moved out of the folder after MOVE_PAIRING_SECONDS, not watchdog's 0.5 s.

    watchdog holds every IN_MOVED_FROM that long, waiting for its IN_MOVED_TO, to report a
    rename as one event. The watcher needs no pairing (a rename seen as a deletion and a
    creation reuses the vector by content, in the same batch as the debounce gathers both),
    while the wait is a quarter of the 2 s in which a moved-out file must leave the index.
    """
    try:
        from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper
    except ImportError:  # not Linux: no inotify observer, nothing to shorten
        return
    InotifyMoveEventGrouper.delay = MOVE_PAIRING_SECONDS


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    # RFC 3339 (+01:00, not +0100): what browsers' Date and datetime.fromisoformat both read.
    return datetime.fromtimestamp(stamp).astimezone().isoformat(timespec="seconds")


def keep_watching(
    make_config: Callable[[], ExtractConfig], poll: bool, retry_seconds: float = 5.0
) -> None:
    """Keep trying for the watch lock, and watch while this process holds it; never returns.

    When the watching process dies (restarted, killed), another one that runs this takes
    over within `retry_seconds`, catching up first. A watcher that cannot start (no index
    yet) says why once and retries.
    """
    said = ""
    while True:
        watcher = None
        try:
            watcher = FolderWatcher(make_config(), poll)
            watcher.start()
            watcher.wait()
        except WatchLockHeld:
            pass  # another process watches; take over if it stops
        except Exception as exc:  # the loop must outlive any one watcher: say it, retry
            if str(exc) != said:
                log.error("watch: the folder watcher stopped: %s", exc)
            said = str(exc)
        finally:
            if watcher is not None:
                watcher.stop()
        time.sleep(retry_seconds)


def watch_in_background(
    make_config: Callable[[], ExtractConfig], poll: bool, retry_seconds: float = 5.0
) -> threading.Thread:
    """In a server process: `keep_watching` in a thread (`imgsim serve --dev`, or the app run
    under a gunicorn of one's own, where every worker offers and the lock picks one)."""
    thread = threading.Thread(
        target=keep_watching, args=(make_config, poll, retry_seconds),
        name="imgsim-watch-claim", daemon=True,
    )  # fmt: skip
    thread.start()
    return thread


def run_watch(config: ExtractConfig, poll: bool = False) -> None:
    """`imgsim watch`: catch up, then follow the folder until Ctrl-C (or the process ends)."""
    watcher = FolderWatcher(config, poll)
    watcher.start()
    try:
        while watcher.running:
            watcher.wait(1.0)  # in steps, so Ctrl-C is seen at once
    except KeyboardInterrupt:
        log.info("Stopped watching %s", watcher.root)
    finally:
        watcher.stop()
