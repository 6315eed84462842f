"""A Static that repaints in place while its height stays the same.

``Static.update`` lays the whole screen out again by default; at a picture every ~0.1-1 s
under a storm that relayout (every panel measured and repainted) was most of what a picture
cost (benchmarks/TUI.md). The panels here know the shape of what they draw (rows of a table,
lines of a text), so they ask for a relayout only when that shape changes."""
from __future__ import annotations

from collections.abc import Hashable

from textual.widgets import Static


class SteadyStatic(Static):
    _shape: Hashable = None

    def show_content(self, content, shape: Hashable) -> None:
        """``shape``: equal for contents of equal height (None: unknown, always relayout)."""
        same = shape is not None and shape == self._shape
        self._shape = shape
        self.update(content, layout=not same)
