"""How long each busy command takes to exit after Ctrl+C (SIGINT) or SIGTERM (issue 28).

Builds (once) in --root a folder of generated 32 px pictures, a tiny trained model and its
index. Then, --tries times per command and signal, starts the command in its own process group
(as a terminal does), waits until it is busy (training past its first epoch, extraction
embedding, a server answering /health; `imgsim demo` serving after its pipeline), sends the
signal to the group and times the exit. Prints a markdown table of medians; `--write-docs`
replaces the "Stopping (issue 28)" section of docs/benchmarks.md. docs/stopping.md promises
5 s. Not a test: figures depend on the machine. Run it alone.

    .venv/bin/python benchmarks/stop_speed.py --root /tmp/stop_speed --write-docs
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_section import DOCS, write_section  # noqa: E402

SECTION = "## Stopping (issue 28)"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
TINY = ["--image-size", "32", "--backbone", "scratch", "--widths", "8,16", "--blocks", "1,1",
        "--embedding-dim", "16", "--head-hidden", "32", "--loss", "triplet"]  # fmt: skip
ABORTS = ("Traceback", "terminate called", "std::system_error", "SIGABRT", "SIGKILL")


def imgsim(*args: str) -> list[str]:
    return [sys.executable, "-m", "imgsim.cli", *args]


def build(root: Path, images: int) -> None:
    """The image folder, a tiny model trained on it and its index, unless already there."""
    from imgsim.images.sample import generate_shapes

    if (root / "work" / "triplet_manifest.sqlite").exists():
        return
    shapes = ("circle", "square", "triangle", "stripes")
    generate_shapes(root / "data", per_class=images // 4, size=32, seed=1, shapes=shapes)
    work = str(root / "work")
    train = ["-q", "train", str(root / "data"), "--workdir", work, "--epochs", "2", *TINY]
    subprocess.run(
        imgsim(*train), env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    index = ["-q", "index", str(root / "data"), "--workdir", work]
    subprocess.run(
        imgsim(*index), env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def busy_when_logged(text: str) -> object:
    def ready(log: Path, _port: int) -> bool:
        return text in log.read_text(errors="replace")

    return ready


def busy_when_answering(log: Path, port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
        return True
    except OSError:
        return False


def _as_a_terminal_starts_it() -> None:
    # A shell starts a background job with Ctrl+C ignored, and a child inherits that (Python
    # then never installs its own handler): a harness started so would measure nothing.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def one_stop(args: list[str], ready: object, sig: int, log: Path, port: int) -> tuple:
    """(seconds from the signal to the exit, exit status, whether abort text was printed)."""
    with open(log, "w") as out:
        process = subprocess.Popen(imgsim(*args), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=ENV,
                                   preexec_fn=_as_a_terminal_starts_it)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while not ready(log, port):  # type: ignore[operator]
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} ended or hung before it was busy; see {log}")
            time.sleep(0.05)
        started = time.monotonic()
        os.killpg(process.pid, sig)
        status = process.wait(timeout=60)
        seconds = time.monotonic() - started
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    text = log.read_text(errors="replace")
    aborted = any(a in text for a in ABORTS)
    if aborted or status != 128 + sig:  # kept, to read: the next run overwrites `log`
        kept = log.with_name(f"failed-{args[0]}-{signal.Signals(sig).name}-{time.time():.0f}.log")
        kept.write_text(text)
        print(f"unexpected stop (status {status}), its output: {kept}", file=sys.stderr)
    return seconds, status, aborted


def cases(root: Path) -> dict[str, tuple]:
    """name → (arguments given a port, readiness check)."""
    data, work = str(root / "data"), str(root / "work")
    train = ["train", data, "--workdir", str(root / "train"), "--epochs", "1000",
             "--checkpoint-every", "1", *TINY]  # fmt: skip
    demo = ["demo", "--dir", str(root / "demo"), "--per-class", "6", "--epochs", "1"]
    return {
        "train": (lambda p: train, busy_when_logged("epoch 2/")),
        "extract": (lambda p: ["extract", data, "--workdir", work], busy_when_logged("img/s")),
        "serve (default workers)": (
            lambda p: ["serve", "--workdir", work, "--port", str(p)],
            busy_when_answering,
        ),
        "demo (its server)": (lambda p: [*demo, "--port", str(p)], busy_when_answering),
    }


def measure(root: Path, tries: int) -> list[dict]:
    rows = []
    for name, (args, ready) in cases(root).items():
        for sig in (signal.SIGINT, signal.SIGTERM):
            runs = []
            for _ in range(tries):
                port = free_port()
                runs.append(one_stop(args(port), ready, sig, root / "stop.log", port))
            times = [r[0] for r in runs]
            rows.append({
                "command": name, "signal": signal.Signals(sig).name,
                "median": statistics.median(times), "max": max(times), "tries": tries,
                "status": sorted({r[1] for r in runs}), "aborts": sum(r[2] for r in runs),
            })  # fmt: skip
            print(table_row(rows[-1]), flush=True)
    return rows


def table_row(r: dict) -> str:
    status = ", ".join(str(s) for s in r["status"])
    return (f"| `imgsim {r['command']}` | {r['signal']} | {r['median']:.2f} | {r['max']:.2f} | "
            f"{r['tries']} | {status} | {r['aborts']} |")  # fmt: skip


HEADER = (
    "| command | signal | median s | max s | tries | exit status | runs with abort text |\n"
    "|---|---|---:|---:|---:|---|---:|"
)


def render(rows: list[dict], load: float) -> str:
    command = " ".join(["benchmarks/stop_speed.py", *sys.argv[1:]])
    body = "\n".join(table_row(r) for r in rows)
    return f"""{SECTION}

- Command: `.venv/bin/python {command}`
- Machine: {os.cpu_count()} CPU cores; Python {platform.python_version()}
- Date: {date.today().isoformat()}; load average (1 min) when it began: {load:.2f}
- Each command busy when signalled (training past its first epoch, extraction embedding, the
  server answering /health), the signal sent to its process group as a terminal's Ctrl+C is;
  seconds from the signal to the exit. docs/stopping.md promises under 5 s.

{HEADER}
{body}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/stop_speed"))
    parser.add_argument("--images", type=int, default=4000, help="the folder extract embeds")
    parser.add_argument("--tries", type=int, default=5, help="per command and signal (median)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    build(args.root, args.images)
    load = os.getloadavg()[0]
    print(HEADER)
    rows = measure(args.root, args.tries)
    if args.write_docs:
        write_section(SECTION, render(rows, load))
        print(f"wrote the '{SECTION}' section of {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
