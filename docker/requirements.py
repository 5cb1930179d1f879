"""The image build's requirements: pyproject.toml's dependencies plus those of the named extras.

python3 requirements.py pyproject.toml [EXTRA ...] > requirements.txt (an extra the file does
not define is skipped with a note on stderr). Standard library only: it runs before the venv.
"""

import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    found = list(project["dependencies"])
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra in optional:
            found += optional[extra]
        else:
            print(f"note: {pyproject} has no extra {extra!r}; skipped", file=sys.stderr)
    return found


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1], sys.argv[2:])))
