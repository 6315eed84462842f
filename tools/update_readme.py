"""Splice generated files into README.md between <!-- NAME:begin --> and <!-- NAME:end --> markers.

    python tools/update_readme.py

  schema   <- fputrace/model/SCHEMA.md      (the report/estimate JSON schema, kept with the model)
  vmlab    <- tests/vmlab/SUMMARY.md        (python -m tests.vmlab.report, after pytest -m vmlab)
  figures  <- benchmarks/FIGURES.md         (python -m benchmarks.figures)
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = {
    "schema": ROOT / "fputrace/model/SCHEMA.md",
    "vmlab": ROOT / "tests/vmlab/SUMMARY.md",
    "figures": ROOT / "benchmarks/FIGURES.md",
}


def demote(md: str) -> str:
    """Headings of a spliced file sit one level below README's sections."""
    return re.sub(r"^(#+) ", lambda m: "#" * min(len(m.group(1)) + 2, 6) + " ", md, flags=re.M)


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for name, src in BLOCKS.items():
        if not src.exists():
            print(f"update_readme: {src.relative_to(ROOT)} missing, block {name!r} left as it is",
                  file=sys.stderr)
            continue
        body = demote(src.read_text().strip())
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            print(f"update_readme: README.md has no {name} markers", file=sys.stderr)
            return 1
        text = pattern.sub(lambda m: f"{m.group(1)}{body}\n{m.group(2)}", text)
    readme.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
