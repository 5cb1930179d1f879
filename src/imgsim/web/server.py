"""`imgsim serve`: the app under gunicorn (N worker processes), or Flask's server with --dev."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.gthread import ThreadWorker

from ..core.config import MODEL_FILE, SearchConfig, load_config, replace
from ..core.errors import ConfigError, ImgsimError, ModelNotLoadedError
from ..core.interrupt import Stopped
from ..model.export import kept_export_names
from ..model.modelfile import read_model_meta
from .app import create_app, token_from_env
from .limits import request_handler
from .searcher import get_searcher
from .watcher_process import WatcherProcess

log = logging.getLogger("imgsim")

# Threads per worker: requests wait on the network and on the forward pass, so a few threads
# keep a worker's core busy; one slow client never holds a whole worker.
DEFAULT_THREADS = 4


# Each worker holds ~50-56 MB (PSS, docs/benchmarks.md "Server memory"): past 8 the default
# would outgrow the 600 MB a small server should hold, for throughput the threads already give.
MAX_DEFAULT_WORKERS = 8


GRACEFUL_TIMEOUT_S = 2  # what a worker gives its requests in flight when stopped
MASTER_GRACE_S = 4  # what the master gives a stopping worker before it kills it


def cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2


def default_workers() -> int:
    """One worker process per core this process may use, at most MAX_DEFAULT_WORKERS."""
    return min(MAX_DEFAULT_WORKERS, cores())


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine (what --debug may listen on)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another name: it may resolve to any interface


def serve(
    workdir: str = ".",
    host: str = "127.0.0.1",
    port: int = 5000,
    config_path: str | None = None,
    debug: bool = False,
    dev: bool = False,
    workers: int = 0,
    threads: int = 0,
    store: str | None = None,
    runtime: str | None = None,
    device: str | None = None,
    watch: bool | None = None,
    watch_poll: bool | None = None,
) -> None:
    """Serve the model and store of `workdir` on http://host:port until stopped.

    gunicorn by default, with `workers` processes (0: one per core) of `threads` threads;
    every worker searches the same store, so a change made through one is seen by all.
    `dev` (or `debug`) runs Flask's single-process development server instead.
    A config file's [search] section applies first; `workdir` overrides its workdir unless it
    is the default ".", so `imgsim serve --config x.toml` keeps the file's choice. IMGSIM_TOKEN
    sets the update endpoints' token, over the file's. `watch`: the image folder is followed
    (embed/watch.py), under gunicorn by a process of its own beside the workers.
    """
    if debug and not is_loopback(host):
        # Werkzeug's debugger runs any Python a visitor types into an error page.
        raise ConfigError(
            f"--debug runs Werkzeug's debugger, which executes code from the page: only on "
            f"loopback (127.0.0.1, ::1, localhost), not on {host!r}"
        )
    config = load_config(config_path).search
    if workdir != "." or config_path is None:
        config = replace(config, {"workdir": workdir})
    if runtime is not None:  # --runtime, over the file
        config = replace(config, {"runtime": runtime})
    if device is not None:
        config = replace(config, {"device": device})
    if store:
        config = replace(config, {"store": store})
    config = replace(config, {"watch": watch, "watch_poll": watch_poll})  # None: the file's
    config = token_from_env(config)
    if dev or debug:
        _serve_dev(config, host, port, debug)
        return
    options = gunicorn_options(config, host, port, workers or default_workers(), threads)
    config = share_cores(config, options["workers"])
    export_before_forking(config)
    where = Path(config.workdir).resolve()
    log.info(
        "Serving %s on http://%s:%d with %d gunicorn workers × %d threads",
        where, host, port, options["workers"], options["threads"],
    )  # fmt: skip
    Gunicorn(config, options).run()


def gunicorn_options(
    config: SearchConfig, host: str, port: int, workers: int, threads: int = 0
) -> dict[str, Any]:
    """gunicorn's settings for imgsim: threaded workers, timeouts above the request deadline."""
    host_part = f"[{host}]" if ":" in host else host
    return {
        "bind": f"{host_part}:{port}",
        "workers": max(1, workers),
        "threads": threads or DEFAULT_THREADS,
        "worker_class": _Worker,
        # The app answers a slow upload with 408 at request_timeout; gunicorn kills a worker
        # only well past it (a stuck forward pass, not a slow client).
        "timeout": int(config.request_timeout) + 30,
        # SIGTERM: requests in flight get this long (Ctrl+C: none), so the whole stop stays
        # under the 5 s docs/stopping.md promises (a search takes well under a second).
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "worker_exit": _exit_now,
        "keepalive": 5,
        "proc_name": "imgsim",
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
    }


def share_cores(config: SearchConfig, workers: int) -> SearchConfig:
    """`config` whose runtime_threads 0 ("the runtime's own choice") becomes each worker's share
    of the cores: every runtime would otherwise start one thread per core in every worker.

    Set through the config rather than in a post-fork hook, so the embedder applies it to the
    runtime it uses (onnxruntime's session options or torch), and an ONNX worker never imports
    torch just to set its thread count.
    """
    if config.runtime_threads:
        return config
    return replace(config, {"runtime_threads": max(1, cores() // max(1, workers))})


def export_before_forking(config: SearchConfig) -> None:
    """With the onnx runtime, have the model's ONNX export kept before the workers start.

    A worker that found none would export it itself, with torch, and hold torch (about 150 MB)
    until it restarts, and every worker would at once. The export runs in a child process, so
    this one (gunicorn's master) never imports torch either. No model file, or an export that
    fails (a read-only folder), is left to the workers, which report it as before.
    """
    if config.runtime != "onnx":
        return
    model = Path(config.workdir) / MODEL_FILE
    try:
        model_id = str(read_model_meta(model).get("model_id") or "")
    except ModelNotLoadedError:
        return
    if not model_id or kept_export_names(model, model_id):
        return
    log.info("Exporting %s to ONNX once, before the workers start", model)
    command = [sys.executable, "-m", "imgsim.cli", "-q", "export", "--onnx", "--model", str(model)]
    subprocess.run(command, check=False, stdout=subprocess.DEVNULL)


class Gunicorn(BaseApplication):
    """gunicorn with imgsim's app factory: each worker loads the model and opens the store."""

    def __init__(self, config: SearchConfig, options: dict[str, Any]) -> None:
        self.search_config = config
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def run(self) -> None:
        """gunicorn's master loop; a stop by Ctrl+C or SIGTERM raises interrupt.Stopped."""
        arbiter = _Arbiter(self)
        if self.search_config.watch:
            arbiter.watcher = WatcherProcess(self.search_config)
        arbiter.run()

    def load(self) -> Any:
        try:
            return create_app(self.search_config, watch_here=False)
        except ImgsimError as exc:
            # One line rather than each worker's traceback; gunicorn then stops, saying that
            # the worker failed to boot (e.g. --device cuda on a machine without a GPU).
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(Arbiter.WORKER_BOOT_ERROR) from None


class _Worker(ThreadWorker):
    """gunicorn's threaded worker, which a stop ends at once, also while it loads the app.

    Loading spends seconds in single C calls on a busy machine (a shared library's load, the
    runtime's session), and Python runs a signal handler only between them: the master would
    kill the worker at its grace ("SIGKILL! Perhaps out of memory?"). A worker that serves no
    request yet has nothing to finish, so until then the kernel ends it on SIGINT or SIGTERM.
    """

    quitting = False

    def handle_quit(self, sig: int, frame: Any) -> None:
        # Ctrl+C reaches a worker twice, from the terminal and from the master. gunicorn's
        # handler, run again inside itself, waited forever on the thread pool's shutdown lock
        # that its first run held, until the master killed the worker.
        if self.quitting:
            return
        self.quitting = True
        super().handle_quit(sig, frame)

    def init_signals(self) -> None:
        super().init_signals()
        self.serving_handlers = {
            sig: signal.signal(sig, signal.SIG_DFL) for sig in (signal.SIGINT, signal.SIGTERM)
        }

    def load_wsgi(self) -> None:
        super().load_wsgi()
        for sig, handler in self.serving_handlers.items():
            signal.signal(sig, handler)
        signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn sets it: requests go on


def _not_an_expected_stop(record: logging.LogRecord) -> bool:
    """False for the master's line on a worker that ended on the stop signal it was sent."""
    args = record.args if isinstance(record.args, tuple) else ()
    expected = len(args) == 2 and args[1] in ("SIGINT", "SIGTERM")
    return not (record.msg == "Worker (pid:%s) was sent %s!" and expected)


def _exit_now(_arbiter: Arbiter, worker: Any) -> None:
    """gunicorn's last hook in a worker: end the process now if it was told to stop.

    Its requests have had their grace (none after Ctrl+C, GRACEFUL_TIMEOUT_S after SIGTERM).
    A normal exit would wait for every request thread, one still reading a slow upload
    included, until the master killed the worker ("SIGKILL! Perhaps out of memory?"). Every
    write to the store and index is atomic, so nothing is left half written.
    """
    if worker.alive:  # it failed to boot: its exit status tells the master so
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class _Arbiter(Arbiter):
    """gunicorn's master, which says which signal stopped it instead of exiting with 0."""

    stopped_by = 0
    watcher: WatcherProcess | None = None  # serve --watch: the folder watcher's process

    def manage_workers(self) -> None:
        super().manage_workers()  # called about once a second, and at each signal
        if self.watcher is not None:
            self.watcher.keep_alive()

    def stop(self, graceful: bool = True) -> None:
        # A worker notices a stop within a second (its poll), then gives its requests
        # GRACEFUL_TIMEOUT_S: the master waits longer before it kills any (set here, after
        # the workers took their copy of the settings).
        self.cfg.set("graceful_timeout", MASTER_GRACE_S)
        self.log.error_log.addFilter(_not_an_expected_stop)  # once: halt stops again
        watcher, self.watcher = self.watcher, None
        if watcher is not None and watcher.process is not None:
            watcher.process.terminate()  # it ends at once; it stops beside the workers
        super().stop(graceful)
        if watcher is not None:
            watcher.stop(MASTER_GRACE_S)

    def kill_worker(self, pid: int, sig: int) -> None:
        # gunicorn says "quit now" with SIGQUIT; SIGINT says the same to a serving worker and
        # also ends one still loading (_Worker), as a terminal's Ctrl+C does.
        super().kill_worker(pid, signal.SIGINT if sig == signal.SIGQUIT else sig)

    def handle_int(self) -> None:
        self.stopped_by = signal.SIGINT
        super().handle_int()

    def handle_term(self) -> None:
        self.stopped_by = signal.SIGTERM
        super().handle_term()

    def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
        try:
            super().halt(reason, exit_status)
        except SystemExit:
            if self.stopped_by and reason is None:  # the workers are stopped: say how
                raise Stopped(self.stopped_by) from None
            raise


def _serve_dev(config: SearchConfig, host: str, port: int, debug: bool) -> None:
    app = create_app(config)
    with app.app_context():
        total = get_searcher().stats()["total_images"]
    workdir_shown = Path(config.workdir).resolve()
    log.info("Serving %d images from %s on http://%s:%d (dev)", total, workdir_shown, host, port)
    # No reloader: it would start a second process that loads the model again.
    app.run(
        host=host,
        port=port,
        debug=debug,
        use_reloader=False,
        threaded=True,
        request_handler=request_handler(config.request_timeout),
    )
