"""create_app's configuration (argument, environment, config file), `serve`, and the shim."""

from __future__ import annotations

import io
import runpy
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from imgsim.core.config import SearchConfig
from imgsim.search.searcher import Searcher
from imgsim.web import create_app, serve
from imgsim.web.app import config_from_env

REPO = Path(__file__).resolve().parents[2]


def test_create_app_loads_the_workdir_once(
    workdir: Path, query_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[object] = []
    load = Searcher.from_workdir
    monkeypatch.setattr(
        Searcher, "from_workdir", lambda *a, **kw: loads.append(a) or load(*a, **kw)
    )
    client = create_app(SearchConfig(workdir=str(workdir))).test_client()
    assert len(loads) == 1
    assert client.get("/stats").get_json()["total_images"] == 11
    for _ in range(3):
        response = client.post("/search", data={"image": (io.BytesIO(query_png), "q.png")})
        assert response.status_code == 200
    assert len(loads) == 1


def test_upload_limits_follow_the_config(make_app) -> None:
    app = make_app(max_image_bytes=1000, max_batch_files=3)
    assert app.config["MAX_CONTENT_LENGTH"] == 3000 + 64 * 1024


def test_create_app_without_arguments_reads_the_environment(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file = tmp_path / "imgsim.toml"
    config_file.write_text('[search]\ntop_k = 7\nworkdir = "/nowhere"\n')
    monkeypatch.setenv("IMGSIM_CONFIG", str(config_file))
    monkeypatch.setenv("IMGSIM_WORKDIR", str(workdir))
    app = create_app()
    assert app.config["IMGSIM"].top_k == 7
    assert app.config["IMGSIM"].workdir == str(workdir)
    assert app.test_client().get("/stats").get_json()["total_images"] == 11


def test_config_from_env_defaults() -> None:
    assert config_from_env({}) == SearchConfig()


def test_bad_config_file_is_refused(tmp_path: Path) -> None:
    from imgsim.core.config import ConfigError

    config_file = tmp_path / "bad.toml"
    config_file.write_text("[search]\nno_such_setting = 1\n")
    with pytest.raises(ConfigError):
        config_from_env({"IMGSIM_CONFIG": str(config_file)})


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Flask, dict[str, Any]]]:
    """What `serve` would run: (the app a gunicorn worker loads, gunicorn's options)."""
    from imgsim.web.server import Gunicorn

    calls: list[tuple[Flask, dict[str, Any]]] = []
    monkeypatch.setattr(Gunicorn, "run", lambda self: calls.append((self.load(), self.options)))
    return calls


@pytest.fixture
def dev_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Flask, dict[str, Any]]]:
    calls: list[tuple[Flask, dict[str, Any]]] = []
    monkeypatch.setattr(Flask, "run", lambda self, **kw: calls.append((self, kw)))
    return calls


def test_a_worker_that_cannot_boot_says_why_in_one_line(
    workdir: Path, runs, capsys: pytest.CaptureFixture
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(SystemExit) as stopped:
        serve(str(workdir), device="cuda")
    assert stopped.value.code == 3  # gunicorn's "worker failed to boot": the server stops
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: --device cuda: no CUDA GPU")
    assert "Traceback" not in err


def test_serve_runs_gunicorn_with_a_worker_per_core(workdir: Path, runs) -> None:
    from imgsim.web.server import default_workers

    serve(str(workdir), host="0.0.0.0", port=8123)
    (app, options), *_ = runs
    from gunicorn.workers.gthread import ThreadWorker

    assert options["bind"] == "0.0.0.0:8123" and issubclass(options["worker_class"], ThreadWorker)
    assert options["workers"] == default_workers() and options["threads"] == 4
    assert options["timeout"] > app.config["IMGSIM"].request_timeout == 30.0
    assert app.config["IMGSIM"].workdir == str(workdir)
    serve(str(workdir), workers=3, threads=2, store="faiss")
    assert (runs[1][1]["workers"], runs[1][1]["threads"]) == (3, 2)
    assert runs[1][0].config["IMGSIM"].store == "faiss"


def test_serve_dev_runs_flasks_server(workdir: Path, dev_runs) -> None:
    serve(str(workdir), host="0.0.0.0", port=8123, dev=True)
    (app, options), *_ = dev_runs
    handler = options.pop("request_handler")
    assert options == {
        "host": "0.0.0.0",
        "port": 8123,
        "debug": False,
        "use_reloader": False,
        "threaded": True,
    }
    assert handler.timeout == app.config["IMGSIM"].request_timeout == 30.0


def test_serve_binds_to_loopback_by_default(workdir: Path, runs) -> None:
    from imgsim.cli.commands import build_parser

    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    serve(str(workdir))
    assert runs[0][1]["bind"] == "127.0.0.1:5000"


def test_serve_keeps_the_config_files_workdir_unless_given(
    workdir: Path, tmp_path: Path, runs
) -> None:
    config_file = tmp_path / "imgsim.toml"
    config_file.write_text(f'[search]\nworkdir = "{workdir}"\ntop_k = 20\n')
    serve(config_path=str(config_file))
    serve(str(tmp_path), config_path=str(config_file))
    assert runs[0][0].config["IMGSIM"].workdir == str(workdir)
    assert runs[0][0].config["IMGSIM"].top_k == 20
    assert runs[1][0].config["IMGSIM"].workdir == str(tmp_path)


def test_app_triplet_shim_runs_imgsim_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    fake_cli = types.ModuleType("imgsim.cli.commands")
    fake_cli.main = lambda argv: seen.append(argv) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "imgsim.cli.commands", fake_cli)
    monkeypatch.setattr(sys, "argv", ["app_triplet.py", "--port", "8000"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "app_triplet.py"), run_name="__main__")
    assert exit_info.value.code == 0
    assert seen == [["serve", "--port", "8000"]]


def test_unhandled_errors_are_json_500(make_app) -> None:
    app = make_app(flask_config={"TESTING": False, "PROPAGATE_EXCEPTIONS": False})

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal server error"}


def test_an_unhandled_error_logs_its_traceback(
    make_app: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    from imgsim.core.logs import setup_logging

    app = make_app()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as in production, not re-raise
    setup_logging(quiet=False)  # the CLI's formatter, as under imgsim serve
    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal server error"}
    err = capsys.readouterr().err
    assert "error: Unhandled error: RuntimeError('a bug')" in err
    assert "Traceback (most recent call last)" in err and 'raise RuntimeError("a bug")' in err


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org", ""])
def test_debug_is_refused_beyond_loopback(host: str, capsys: pytest.CaptureFixture[str]) -> None:
    from imgsim.cli.commands import main

    assert main(["serve", "--debug", "--host", host]) == 1
    assert "only on loopback" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    from imgsim.web.server import is_loopback

    assert is_loopback(host)


def test_the_default_worker_count_stops_at_eight(monkeypatch: pytest.MonkeyPatch) -> None:
    import imgsim.web.server as server

    monkeypatch.setattr(server, "cores", lambda: 32)
    assert server.default_workers() == server.MAX_DEFAULT_WORKERS == 8
    monkeypatch.setattr(server, "cores", lambda: 2)
    assert server.default_workers() == 2
