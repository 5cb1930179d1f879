"""The image's HEALTHCHECK: exit 0 when the server's GET /health answers 200, else 1."""

import os
import sys
import urllib.request

# The port `serve` listens on in the container: 5000 unless the command line changed it.
PORT = os.environ.get("IMGSIM_PORT", "5000")


def main() -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"/health: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
