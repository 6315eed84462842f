"""``fputrace calibrate``'s engine: measure XSAVE/XRSTOR cycles per component set on this CPU and
make a cost model of them (SPEC 5.5).

  bench     builds the C micro-benchmark (``xsave_bench.c``) with the system compiler and runs it
  costfile  turns its ticks into a cost-model file: one ``per_xfeatures`` entry per set

Without a compiler, or on a CPU/OS without XSAVE, calibration stops with one line saying so;
estimates then keep using the built-in default cost model, which says it is not this CPU's.
Sets the CPU or kernel lacks (no AVX-512, no AMX, AMX permission refused) are left out of the
file with the precise reason.
"""
from .bench import HIDE_ENV, SETS, CalibrationError, build, find_compiler, measure
from .costfile import cost_model_from

__all__ = ["CalibrationError", "HIDE_ENV", "SETS", "build", "cost_model_from", "find_compiler",
           "measure"]
