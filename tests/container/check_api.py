"""The container test's client: waits for a served imgsim, then checks its page and JSON API.

Standard library only, as it runs on the host: python3 check_api.py URL --images N --query IMG
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def wait_for(url: str, seconds: float) -> dict[str, Any]:
    """GET url until it answers (the container trains nothing, but loads the model first)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            status, body = get(url)
            if status == 200:
                return json.loads(body)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"no answer from {url} within {seconds:.0f}s")
        time.sleep(1)


def post_image(url: str, path: Path) -> dict[str, Any]:
    """POST one image as multipart/form-data field `image`, as the page does."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{path.name}"'
            f"\r\nContent-Type: image/png\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {message}")
    print(f"ok: {message}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", help="e.g. http://127.0.0.1:5000")
    parser.add_argument("--images", type=int, required=True, help="images the index must hold")
    parser.add_argument("--query", type=Path, required=True, help="an indexed image")
    parser.add_argument("--wait", type=float, default=180, help="seconds to wait for /health")
    args = parser.parse_args()

    health = wait_for(f"{args.url}/health", args.wait)
    check(health.get("ready") is True, f"/health is ready ({health})")
    stats = wait_for(f"{args.url}/stats", 10)
    check(stats["total_images"] == args.images, f"/stats: {stats['total_images']} images")
    check(stats["model_loaded"] and stats["embeddings_loaded"], "/stats: model and index loaded")
    status, page = get(f"{args.url}/")
    check(status == 200 and b"<html" in page.lower(), "GET / serves the page")
    found = post_image(f"{args.url}/search?top_k=5&threshold=0", args.query)
    results = found["results"]
    check(bool(results), f"/search: {found['total_results']} results")
    top = results[0]
    check(
        top["filename"] == args.query.name and top["similarity"] > 99,
        f"/search: the query image itself comes first ({top['filename']}, {top['similarity']}%)",
    )
    status, image = get(args.url + top["url"])
    check(status == 200 and image == args.query.read_bytes(), "/images/<name> serves the file")


if __name__ == "__main__":
    main()
