"""``Columns``: a small table of equal-length columns (numpy arrays or lists).

The model's tables are built as Columns and become pandas DataFrames only when someone asks
(``.frame()``): importing pandas costs ~0.4 s, which `fputrace report`'s text, JSON and CSV
output never needs.
"""
from __future__ import annotations

import csv
import io

import numpy as np


class Columns:
    def __init__(self, data: dict, categories: dict | None = None):
        self.data = dict(data)
        self.categories = categories or {}      # column -> category names (a pandas Categorical)

    @property
    def names(self) -> list[str]:
        return list(self.data)

    def __len__(self) -> int:
        return len(next(iter(self.data.values()))) if self.data else 0

    def __getitem__(self, name: str):
        return self.data[name]

    def __setitem__(self, name: str, values) -> None:
        self.data[name] = values

    def take(self, index) -> "Columns":
        """Rows by a boolean mask, integer positions or a slice."""
        out = {}
        for k, v in self.data.items():
            if isinstance(v, np.ndarray):
                out[k] = v[index]
            elif isinstance(index, slice):
                out[k] = v[index]
            else:
                out[k] = np.asarray(v, dtype=object)[index].tolist()
        return Columns(out, self.categories)

    def head(self, n: int | None) -> "Columns":
        return self if n is None else self.take(slice(0, n))

    def select(self, names: list[str]) -> "Columns":
        return Columns({k: self.data[k] for k in names}, self.categories)

    def records(self) -> list[dict]:
        """One dict per row, Python scalars (for JSON)."""
        return list(self.iter_records())

    def iter_records(self, chunk: int = 4096):
        """``records`` a chunk at a time (a table of 400k rows stays numpy until written)."""
        for lo in range(0, len(self), chunk):
            part = self.take(slice(lo, lo + chunk))
            cols = {k: (v.tolist() if isinstance(v, np.ndarray) else list(v))
                    for k, v in part.data.items()}
            yield from (dict(zip(cols, row)) for row in zip(*cols.values()))

    def rows(self, names: list[str] | None = None, chunk: int = 4096):
        """Row tuples of the columns ``names``, converted a chunk at a time."""
        names = names or self.names
        for lo in range(0, len(self), chunk):
            part = self.take(slice(lo, lo + chunk))
            cols = [(part.data[k].tolist() if isinstance(part.data[k], np.ndarray) else part.data[k])
                    for k in names]
            yield from zip(*cols)

    def write_csv(self, out) -> None:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(self.names)
        for row in self.rows():
            w.writerow(row)

    def to_csv(self) -> str:
        buf = io.StringIO()
        self.write_csv(buf)
        return buf.getvalue()

    def frame(self, index: str | None = None):
        import pandas as pd
        data = {}
        for k, v in self.data.items():
            if k in self.categories:
                v = pd.Categorical(list(v), categories=list(self.categories[k]))
            data[k] = v
        df = pd.DataFrame(data, columns=self.names)
        return df.set_index(index) if index else df
