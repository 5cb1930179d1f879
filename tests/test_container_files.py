"""The container files (Dockerfile, compose.yaml, docker/) agree with each other and the CLI.

Building and running the image is `make container-test` (tests/container/run.sh); these checks
need no container engine, so they run with the rest of the suite.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from imgsim.cli.commands import build_parser
from imgsim.core.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
HEALTHCHECK = ["CMD", "python3", "/usr/local/lib/imgsim/healthcheck.py"]


def instructions(name: str) -> list[str]:
    """The arguments of every `NAME` instruction of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.*)$", text, re.MULTILINE)]


def final_stage() -> str:
    return DOCKERFILE[DOCKERFILE.rindex("\nFROM ") :]


def test_dockerfile_is_multi_stage_from_bookworm_slim() -> None:
    froms = instructions("FROM")
    assert len(froms) == 2
    assert all(f.startswith("docker.io/library/debian:bookworm-slim") for f in froms)
    final = final_stage()
    assert "COPY --from=build /opt/venv /opt/venv" in final
    # no compiler, pip or apt lists in what is shipped
    assert "build-essential" not in DOCKERFILE and "gcc" not in final
    assert "rm -rf /var/lib/apt/lists/*" in final


def test_dockerfile_runs_serve_as_a_non_root_user_with_volumes() -> None:
    assert instructions("USER") == ["imgsim"]
    entrypoint = yaml.safe_load(instructions("ENTRYPOINT")[0])
    assert entrypoint == ["/usr/bin/tini", "-g", "--", "/usr/local/lib/imgsim/entrypoint.sh"]
    cmd = yaml.safe_load(instructions("CMD")[0])
    assert cmd == ["serve", "--host", "0.0.0.0", "--port", "5000", "--workdir", "/work"]
    args = build_parser().parse_args(cmd)  # the CLI still takes the image's command
    assert (args.command, args.host, args.port, args.workdir) == ("serve", "0.0.0.0", 5000, "/work")
    assert instructions("EXPOSE") == ["5000"]
    assert yaml.safe_load(instructions("VOLUME")[0]) == ["/data", "/work"]
    assert "IMGSIM_WORKDIR=/work" in final_stage()


def test_dockerfile_healthcheck_and_pip_arguments() -> None:
    (health,) = instructions("HEALTHCHECK")
    assert "--start-period=" in health
    assert health.endswith('CMD ["python3", "/usr/local/lib/imgsim/healthcheck.py"]')
    args = instructions("ARG")
    assert "PIP_INDEX_URL=https://pypi.org/simple" in args
    assert "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu" in args
    assert {'PIP_FIND_LINKS=""', 'PIP_CERT=""'} <= set(args)
    assert "PIP_NO_CACHE_DIR=1" in DOCKERFILE


def test_container_config_points_train_and_extract_at_data() -> None:
    config = load_config(ROOT / "docker" / "container.toml")
    assert config.train.data_dir == "/data" and config.extract.data_dir == "/data"
    assert config.train.output_dir == "." and config.extract.output_dir == "."  # cwd is /work


def test_requirements_of_the_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("reqs", ROOT / "docker" / "requirements.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["a==1"]\n'
        '[project.optional-dependencies]\nmilvus = ["b==2"]\ndev = ["c==3"]\n'
    )
    assert module.requirements(str(pyproject), []) == ["a==1"]
    assert module.requirements(str(pyproject), ["milvus", "nosuch"]) == ["a==1", "b==2"]
    assert "no extra 'nosuch'" in capsys.readouterr().err
    real = module.requirements(str(ROOT / "pyproject.toml"), ["milvus"])
    assert any(r.startswith("torch==") for r in real)


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*"
    for path in ("pyproject.toml", "README.md", "src/", "docker/"):
        assert f"!{path}" in lines
        assert (ROOT / path).exists()


def test_entrypoint_is_valid_posix_shell() -> None:
    entrypoint = ROOT / "docker" / "entrypoint.sh"
    assert entrypoint.stat().st_mode & 0o111, "must be executable"
    subprocess.run(["sh", "-n", str(entrypoint)], check=True)


@pytest.mark.parametrize(("status", "code"), [(200, 0), (503, 1), (None, 1)])
def test_healthcheck_script(monkeypatch: pytest.MonkeyPatch, status: int | None, code: int) -> None:
    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / "docker/healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class Answer:
        def __init__(self, url: str, timeout: float) -> None:
            assert url == "http://127.0.0.1:5000/health"
            if status is None:
                raise ConnectionRefusedError("refused")
            if status >= 400:
                raise module.urllib.error.HTTPError(url, status, "down", {}, None)  # type: ignore[arg-type]
            self.status = status

        def __enter__(self) -> Answer:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(module.urllib.request, "urlopen", Answer)
    assert module.main() == code


def test_compose_embedded_service() -> None:
    imgsim = COMPOSE["services"]["imgsim"]
    assert "profiles" not in imgsim  # what `docker compose up` starts
    assert imgsim["build"] == "."
    assert imgsim["ports"] == ["127.0.0.1:${IMGSIM_PORT:-5000}:5000"]
    assert [v.split(":")[-1] for v in imgsim["volumes"]] == ["/data", "/work"]
    assert "IMGSIM_STORE" not in imgsim["environment"]
    assert imgsim["healthcheck"]["test"] == HEALTHCHECK


def test_compose_milvus_profile() -> None:
    services = COMPOSE["services"]
    milvus_side = {"imgsim-milvus", "etcd", "minio", "milvus-standalone"}
    for name in milvus_side:
        assert services[name]["profiles"] == ["milvus"], name
    imgsim = services["imgsim-milvus"]
    assert imgsim["build"]["args"]["IMGSIM_EXTRAS"] == "milvus"  # the client library
    assert imgsim["image"] != services["imgsim"]["image"]
    assert imgsim["environment"]["IMGSIM_STORE"] == "milvus://milvus-standalone:19530"
    assert imgsim["depends_on"]["milvus-standalone"]["condition"] == "service_healthy"
    assert imgsim["healthcheck"]["test"] == HEALTHCHECK
    assert imgsim["ports"][0].startswith("127.0.0.1:")
    milvus = services["milvus-standalone"]
    assert milvus["image"].startswith("milvusdb/milvus:v2.")
    assert milvus["command"] == ["milvus", "run", "standalone"]
    assert milvus["environment"]["ETCD_ENDPOINTS"] == "etcd:2379"
    assert milvus["environment"]["MINIO_ADDRESS"] == "minio:9000"
    assert {"etcd", "minio"} == set(milvus["depends_on"])
    for name in ("etcd", "minio", "milvus-standalone"):
        assert "ports" not in services[name], f"{name} stays inside the compose network"
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    named = set(COMPOSE["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("${") or source in named, volume
