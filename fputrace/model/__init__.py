"""The analysis half of fputrace (SPEC 5): ownership replay, policies, cost model.

    from fputrace.model import Model
    m = Model(meta); m.feed(batch); m.report(); m.estimate(); m.snapshot(); m.task_detail(tid)
    m.add_sink(sink)        # per-event annotations after each chunk (sinks.py)
    m.view()                # the accessors everything above is built from (tables.ModelView)

Files: engine.h/engine.c/replay.h (the C engine: state structs, the per-event pass, the policy
replay), structs.py (their numpy mirror), native.py/build_engine.py (finding/building and loading
the library), state.py (the arrays and the calls), model.py (Model), tables.py (accessors),
report.py/estimate.py/views.py/text.py (what they become). The dashboard's sink for owner strips,
rates and timelines is its own: fputrace/tui/activity.py, handed over as ``Model(history=...)``.
"""
from .cost import BUILTIN_DEFAULT, CostModel, load_cost_model
from .model import Model
from .policies import POLICIES, Policy

__all__ = ["Model", "CostModel", "BUILTIN_DEFAULT", "load_cost_model", "POLICIES", "Policy"]
