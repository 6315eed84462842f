"""Where the files shipped beside the code live: bpf/ and dashboards/ (in the wheel: inside the
package; in a source checkout: at the top of the tree)."""
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PKG / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"fputrace installation is missing its {name}/ directory")


def bpf_dir() -> Path:
    return _find("bpf")


def dashboards_dir() -> Path:
    return _find("dashboards")
