"""Install-time build of the model's C engine (hatchling build hook, see pyproject.toml).

`pip install .` / `pip install -e .` compile fputrace/model/engine.c into
fputrace/model/_engine-<hash>.so, so that the first `fputrace report` after an install waits for
nothing (benchmarks/MODEL.md: why C, and the alternatives measured). The build recipe is
fputrace/model/build_engine.py (standard library only), loaded by path: the package itself needs
numpy, which the isolated build environment does not have.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ROOT = Path(__file__).resolve().parent


def _recipe():
    spec = importlib.util.spec_from_file_location(
        "fputrace_build_engine", ROOT / "fputrace" / "model" / "build_engine.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class EngineBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel":
            return
        recipe = _recipe()
        lib = recipe.build(ROOT / "fputrace" / "model")
        recipe.remove_stale(lib.parent, lib.name)
        build_data["pure_python"] = False          # a platform wheel: it carries machine code
        build_data["infer_tag"] = True
        if version != "editable":                  # (an editable install imports the tree itself)
            build_data["force_include"][str(lib)] = f"fputrace/model/{lib.name}"
