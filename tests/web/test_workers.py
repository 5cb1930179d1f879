"""Several gunicorn workers (`imgsim serve --workers 3`) changing and searching one store.

Each client adds its own images and deletes some, through whatever worker answers, and after
every change checks the answers of many requests (so of every worker): nothing stale after
a second, nothing lost, nothing twice. Then the CLI changes the collection beside the server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from webtest_images import image_bytes, make_image

from tests import milvus_server

TOKEN = "workers-test-token"
CLIENTS, ADDS = 3, 4  # each client adds ADDS images and deletes every other one
FRESH_WITHIN = 1.0  # seconds a change may take to reach every worker


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, method: str = "GET", body: bytes | None = None, ctype: str = "") -> tuple:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if ctype:
        headers["Content-Type"] = ctype
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def multipart(field: str, filename: str, data: bytes, **fields: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'.encode()
        + data
        + b"\r\n"
    )
    return b"".join(
        parts
    ) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def search_names(base: str, image: bytes) -> list[str]:
    body, ctype = multipart("image", "q.png", image, top_k="50", threshold="0")
    status, answer = http(f"{base}/search", "POST", body, ctype)
    assert status == 200, answer
    names = [r["filename"] for r in json.loads(answer)["results"]]
    assert len(names) == len(set(names)), f"an image twice: {names}"
    return names


def eventually(check, what: str) -> None:
    """`check()` must hold within FRESH_WITHIN and then on 6 requests in a row (all workers)."""
    deadline = time.monotonic() + FRESH_WITHIN
    while not check():
        assert time.monotonic() < deadline, f"still stale after {FRESH_WITHIN}s: {what}"
        time.sleep(0.05)
    for _ in range(6):
        assert check(), f"a worker went back to a stale answer: {what}"


@pytest.fixture(params=["faiss", "milvus"])
def server(request: pytest.FixtureRequest, own_workdir: Path) -> Iterator[tuple[str, Path, str]]:
    """(URL, workdir, store) of `imgsim serve --workers 3` over a tiny workdir."""
    from imgsim.store import open_store
    from imgsim.store.exports import build_collection, write_exports

    workdir = own_workdir
    store = "faiss"
    if request.param == "milvus":
        address = request.getfixturevalue("milvus_address")
        store = milvus_server.unique_spec(address)
        request.addfinalizer(lambda: milvus_server.drop_prefix(address, store))
        with open_store(workdir, "faiss") as local:  # copy the collection into Milvus
            names, vectors = zip(*local.iter_vectors(), strict=True)
            info = local.info()
        from imgsim.model.network import load_model

        model_id = load_model(workdir / "triplet_base_final.pt")[1]["model_id"]
        with open_store(workdir, store, model_id) as remote:
            build_collection(remote, vectors[0], names[0], info.data_dir, model_id)
            write_exports(remote, workdir)
    port = free_port()
    env = {**os.environ, "IMGSIM_TOKEN": TOKEN}
    command = [sys.executable, "-m", "imgsim.cli", "-q", "serve", "--workers", "3",
               "--threads", "2", "--port", str(port), "--workdir", str(workdir),
               "--store", store]  # fmt: skip
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if http(f"{base}/health")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield base, workdir, store
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def client_run(base: str, client: int, errors: list[BaseException]) -> None:
    try:
        for i in range(ADDS):
            name = f"yellow{client}_{i:03d}.png"
            data = image_bytes(make_image((230, 200, 20 + 60 * client), seed=100 * client + i))
            body, ctype = multipart("images", name, data)
            status, answer = http(f"{base}/images", "POST", body, ctype)
            assert status == 201, answer
            eventually(lambda n=name: http(f"{base}/images/{n}")[0] == 200, f"{name} added")
            eventually(lambda n=name, d=data: n in search_names(base, d), f"{name} searchable")
            if i % 2:
                status, answer = http(f"{base}/images/{name}", "DELETE")
                assert status == 200, answer
                eventually(lambda n=name: http(f"{base}/images/{n}")[0] == 404, f"{name} gone")
                eventually(lambda n=name, d=data: n not in search_names(base, d), f"{name} unfound")
    except BaseException as exc:  # reported by the test: pytest does not see thread errors
        errors.append(exc)


@pytest.mark.slow
def test_three_workers_agree_on_every_change(server: tuple[str, Path, str]) -> None:
    base, workdir, _ = server
    before = json.loads(http(f"{base}/stats")[1])["total_images"]
    errors: list[BaseException] = []
    threads = [threading.Thread(target=client_run, args=(base, c, errors)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    expected = before + CLIENTS * ADDS // 2
    eventually(
        lambda: json.loads(http(f"{base}/stats")[1])["total_images"] == expected, "the count"
    )
    data = workdir.parent / "data"
    kept = {f"yellow{c}_{i:03d}.png" for c in range(CLIENTS) for i in range(0, ADDS, 2)}
    assert kept <= {p.name for p in data.iterdir()}  # every added file is where it belongs
    assert not {f"yellow{c}_001.png" for c in range(CLIENTS)} & {p.name for p in data.iterdir()}
