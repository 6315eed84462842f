"""The analysis half of fputrace (SPEC 5): ownership replay, policies, cost model.

    from fputrace.model import Model
    m = Model(meta); m.feed(batch); m.report(); m.estimate(); m.snapshot(); m.task_detail(tid)
"""
from .cost import BUILTIN_DEFAULT, CostModel, load_cost_model
from .model import Model
from .policies import POLICIES, Policy

__all__ = ["Model", "CostModel", "BUILTIN_DEFAULT", "load_cost_model", "POLICIES", "Policy"]
