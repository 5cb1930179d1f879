"""A camera dump at first use: `imgsim extract --pretrained` to the first search answered over HTTP.

Builds (once, in --dir) N camera-sized JPEGs, 3264×2448 (8 MP) at quality 90, like a phone's
camera folder with no categories: each is one to three real images of a colour folder
(benchmarks/colour_folder.py, e.g. /tmp/colour: clip art and photographs people made) scaled
and laid onto a blurred photo-like background, with sensor-like noise; every fourth stores its
pixels turned and says so in an EXIF orientation tag (6, 8 or 3), as cameras held sideways do.
Then, as a new user would, with the defaults:

1. `imgsim extract --pretrained PHOTOS --workdir W` in a fresh process: wall time, images/s,
   the process's peak RSS and the peak PSS of it and its decode workers (sampled every 50 ms);
2. `imgsim serve --workdir W` (gunicorn, default workers), started as soon as extract ends,
   and one of the photos POSTed to /search until an answer comes: the seconds from the start
   of step 1 to that answer, and whether its nearest hit is the photo itself;
3. serve's memory (PSS of gunicorn's master and workers) after that answer and after 20 more.

Files are written to a temporary name and renamed, so a stopped build leaves no half JPEG; a
finished build is marked and reused. `--keep` keeps the photos for the next run, else they are
removed at the end. The goal run, 10,000 photos, needs about 20 GB (checked before writing:
`--max-gb`). The files were just written, so reads come from the page cache, as on a camera dump
copied in a moment ago. Run it alone on the machine. Not a test.

    .venv/bin/python benchmarks/camera_jpegs.py /tmp/colour --images 50            # a check
    .venv/bin/python benchmarks/camera_jpegs.py /tmp/colour --images 10000 --keep --json-out c.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_memory import _pss_kb, _tree
from web_latency import free_port, multipart

SIZE = (3264, 2448)  # 8 MP, 4:3: a phone camera's picture
QUALITY = 90
NOISE = 5.0  # sensor noise, standard deviation in 0-255 levels
# EXIF orientation -> the turn that stores an upright picture so that the tag turns it back.
ORIENTATION_TAG = 0x0112
STORED_TURN = {
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
    3: Image.Transpose.ROTATE_180,
}
DONE_MARKER = ".complete"
_sources: list[Path] = []
_noise: np.ndarray | None = None


def _init_worker(sources: list[Path]) -> None:
    """Each builder process: the source list, and one noise field it shifts for every photo."""
    global _sources, _noise
    _sources = sources
    rng = np.random.default_rng(os.getpid())
    _noise = rng.normal(0, NOISE, (SIZE[1], SIZE[0], 1)).astype(np.int16)


def background(rng: np.random.Generator) -> Image.Image:
    """A blurred photo-like scene: a two-colour gradient and soft blobs, drawn small, enlarged."""
    w, h = SIZE[0] // 16, SIZE[1] // 16
    top, bottom = rng.integers(0, 256, (2, 3))
    ramp = np.linspace(0, 1, h)[:, None, None]
    arr = (top * (1 - ramp) + bottom * ramp) * np.ones((1, w, 1))
    im = Image.fromarray(arr.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 9))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        rw, rh = (int(v) for v in rng.integers(w // 10, w // 2, 2))
        draw.ellipse(
            [x - rw, y - rh, x + rw, y + rh], fill=tuple(int(v) for v in rng.integers(0, 256, 3))
        )
    return im.filter(ImageFilter.GaussianBlur(3)).resize(SIZE, Image.Resampling.BICUBIC)


def photo(seed: int) -> tuple[Image.Image, int | None]:
    """One upright picture and the EXIF orientation to store it with (None: none)."""
    rng = np.random.default_rng(seed)
    im = background(rng)
    for _ in range(int(rng.integers(1, 4))):
        with Image.open(_sources[int(rng.integers(0, len(_sources)))]) as src:
            src.draft("RGB", (SIZE[0], SIZE[1]))
            layer = src.convert("RGBA")
        scale = float(rng.uniform(0.3, 0.7)) * min(SIZE) / max(layer.size)
        layer = layer.resize(
            (max(1, round(layer.width * scale)), max(1, round(layer.height * scale)))
        )
        x = int(rng.integers(0, SIZE[0] - layer.width + 1))
        y = int(rng.integers(0, SIZE[1] - layer.height + 1))
        im.paste(layer, (x, y), layer)
    assert _noise is not None
    dy, dx = (int(v) for v in rng.integers(0, 1024, 2))
    shifted = np.roll(_noise, (dy, dx), axis=(0, 1))
    arr = np.clip(np.asarray(im, dtype=np.int16) + shifted, 0, 255).astype(np.uint8)
    orientation = (6, 8, 3)[(seed // 4) % 3] if seed % 4 == 0 else None
    return Image.fromarray(arr, "RGB"), orientation


def write_photo(path: Path, seed: int) -> int:
    """The photo of `seed` as a JPEG at `path` (through a temporary name); its size in bytes."""
    if path.exists():
        return path.stat().st_size
    im, orientation = photo(seed)
    exif = Image.Exif()
    if orientation is not None:
        im = im.transpose(STORED_TURN[orientation])  # stored as the sensor saw it
        exif[ORIENTATION_TAG] = orientation
    part = path.with_name(path.name + ".part")
    im.save(part, "JPEG", quality=QUALITY, exif=exif.tobytes())
    os.replace(part, path)
    return path.stat().st_size


def _write_job(job: tuple[Path, int]) -> int:
    return write_photo(*job)


def build(colour: Path, photos: Path, count: int, max_gb: float) -> float:
    """Write the photos unless a finished build of `count` is there; their size in GB."""
    marker = photos / DONE_MARKER
    if marker.exists() and marker.read_text().strip() == str(count):
        return sum(p.stat().st_size for p in photos.glob("*.jpg")) / 1e9
    sources = sorted(colour.rglob("*.png"))
    if not sources:
        raise SystemExit(f"no PNG under {colour}: build it with benchmarks/colour_folder.py")
    photos.mkdir(parents=True, exist_ok=True)
    jobs = [(photos / f"IMG_{i:05d}.jpg", i) for i in range(count)]
    with Pool(os.cpu_count() or 2, _init_worker, (sources,)) as pool:
        first = pool.map(_write_job, jobs[:16])
        need = np.mean(first) * count / 1e9 * 1.1
        free = shutil.disk_usage(photos).free / 1e9
        if need > min(max_gb, free):
            raise SystemExit(f"{count} photos need about {need:.1f} GB: more than --max-gb "
                             f"{max_gb:g} or the {free:.1f} GB free under {photos}")  # fmt: skip
        sizes = first + pool.map(_write_job, jobs[16:], chunksize=8)
    marker.write_text(f"{count}\n")
    return sum(sizes) / 1e9


def extract(photos: Path, work: Path, env: dict[str, str]) -> dict:
    """`imgsim extract --pretrained` in a fresh process: seconds, peak RSS and peak tree PSS."""
    cmd = [sys.executable, "-m", "imgsim.cli", "-q", "extract", "--pretrained", str(photos),
           "--workdir", str(work)]  # fmt: skip
    # Its messages go to a file: a pipe read only at the end would fill and stall it.
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
        status, usage, peak_kb = wait_sampled(proc.pid)
        seconds = time.perf_counter() - start
        log.seek(0)
        stderr = log.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"imgsim extract failed:\n{stderr[-2000:]}")
    return {"seconds": seconds, "rss_mb": usage.ru_maxrss / 1024, "pss_mb": peak_kb / 1024}


def wait_sampled(pid: int) -> tuple[int, resource.struct_rusage, int]:
    """Wait for a child; its status, usage and the peak PSS (KB) of its tree, every 50 ms."""
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], sum(_pss_kb(p) for p in _tree(pid)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(pid, 0)
    done.set()
    sampler.join()
    return status, usage, peak[0]


def ask(port: int, body: bytes, content_type: str) -> dict | None:
    """One POST /search; its JSON if answered 200, None while the server is not up yet."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/search", body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        payload = response.read()
        conn.close()
    except OSError:
        return None
    if response.status == 200:
        return json.loads(payload)
    if response.status == 503:  # up, not ready yet (workers still loading)
        return None
    raise SystemExit(f"POST /search answered {response.status}: {payload[:300]!r}")


def first_answer(work: Path, query: Path, env: dict[str, str], timeout: float) -> tuple:
    """Start `imgsim serve`; seconds to the first answered search, the answer, the server."""
    port = free_port()
    cmd = [sys.executable, "-m", "imgsim.cli", "-q", "serve", "--workdir", str(work),
           "--port", str(port)]  # fmt: skip
    start = time.perf_counter()
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    body, content_type = multipart(query.read_bytes(), 5)
    while time.perf_counter() - start < timeout:
        if server.poll() is not None:
            raise SystemExit(f"imgsim serve exited with {server.returncode}")
        answer = ask(port, body, content_type)
        if answer is not None:
            return time.perf_counter() - start, answer, server, port
        time.sleep(0.05)
    server.terminate()
    raise SystemExit(f"no search answered within {timeout:.0f} s")


def serve_memory(server: subprocess.Popen, port: int, query: Path, more: int) -> dict:
    """PSS of the server's tree after its first answer, and after `more` further searches."""
    first = sum(_pss_kb(p) for p in _tree(server.pid)) / 1024
    body, content_type = multipart(query.read_bytes(), 5)
    for _ in range(more):
        if ask(port, body, content_type) is None:
            raise SystemExit("the server stopped answering")
    later = sum(_pss_kb(p) for p in _tree(server.pid)) / 1024
    return {"pss_mb_first": first, "pss_mb_after": later, "searches_after": more,
            "processes": len(_tree(server.pid))}  # fmt: skip


def report(r: dict) -> str:
    e, s = r["extract"], r["serve"]
    return f"""| photos | size | extract | images/s | extract peak PSS (all) / RSS (main) | serve up + first answer | extract start → first answer | top hit is the photo | serve PSS after 1 / {s["searches_after"] + 1} searches |
|---:|---:|---:|---:|---:|---:|---:|---|---:|
| {r["images"]:,} | {r["gb"]:.1f} GB | {e["seconds"]:.1f} s | {r["images"] / e["seconds"]:.1f} | {e["pss_mb"]:.0f} / {e["rss_mb"]:.0f} MB | {r["serve_seconds"]:.1f} s | **{r["total_seconds"]:.1f} s** | {r["self_first"]} | {s["pss_mb_first"]:.0f} / {s["pss_mb_after"]:.0f} MB ({s["processes"]} processes) |
"""  # noqa: E501


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("colour", type=Path, help="benchmarks/colour_folder.py's output (its PNGs)")
    p.add_argument("--images", type=int, default=10000, help="photos (10,000: the issue's)")
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "imgsim-camera")
    p.add_argument("--keep", action="store_true", help="keep the photos for the next run")
    p.add_argument("--max-gb", type=float, default=25.0, help="refuse to write more (25)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for serve")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    if args.images < 1:
        p.error("--images must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    photos = args.dir / f"photos_{args.images}"
    print(f"building {args.images:,} photos in {photos} (once) …", file=sys.stderr, flush=True)
    gb = build(args.colour, photos, args.images, args.max_gb)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    load = os.getloadavg()[0]
    query = photos / "IMG_00001.jpg" if args.images > 1 else photos / "IMG_00000.jpg"
    try:
        with tempfile.TemporaryDirectory() as work:
            run = extract(photos, Path(work), env)
            seconds, answer, server, port = first_answer(Path(work), query, env, args.timeout)
            try:
                memory = serve_memory(server, port, query, 20)
            finally:
                server.terminate()
                server.wait(timeout=60)
    finally:
        if not args.keep:
            shutil.rmtree(photos, ignore_errors=True)
    top = answer["results"][0]["filename"] if answer["results"] else None
    result = {
        "images": args.images, "gb": gb, "extract": run, "serve_seconds": seconds,
        "total_seconds": run["seconds"] + seconds, "serve": memory,
        "self_first": "yes" if top == query.name else f"no ({top})",
        "machine": f"{os.cpu_count()} cores, {platform.machine()}", "load_average": load,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "command": " ".join(sys.argv),
    }  # fmt: skip
    print(report(result))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
