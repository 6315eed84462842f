"""The live dashboard's data path on real BPF: when the model cannot keep up, the capture waits,
the kernel ring overflows, and the BPF side's exact loss counts reach the model; nothing is
dropped between the ring and the model."""
from __future__ import annotations

import shutil
import subprocess
import threading
import time

import numpy as np
import pytest

from fputrace.events import Kind
from fputrace.tui.live import LiveSource, open_live_producer

from .tui_helpers import HandModel

pytestmark = [pytest.mark.tui, pytest.mark.live, pytest.mark.slow, pytest.mark.timeout(300)]


class SlowCountingModel(HandModel):
    """Counts every record by kind and takes 20 µs per event (50k events/s, a tenth of what the
    storm below produces here)."""

    def __init__(self, start_ns: int) -> None:
        super().__init__()
        self.start_ns = start_ns
        self.proc_records = 0          # the /proc task table the session sends first
        self.records = 0
        self.slow = True

    def feed(self, batch):
        super().feed(batch)
        self.records += len(batch)
        table = np.isin(batch["kind"], (Kind.COMM, Kind.TASK)) & (batch["ts_ns"] == self.start_ns)
        self.proc_records += int(table.sum())
        if self.slow:
            time.sleep(len(batch) * 20e-6)


def test_a_slow_model_loses_events_only_in_the_kernel_ring_and_every_one_is_counted(need_bcc):
    if not shutil.which("perf"):
        pytest.skip("perf not installed (Debian linux-perf): it drives the context switches")
    # a 4 MiB ring (~87k events: more than the session reads per poll at this rate) behind a
    # 2,000-event queue in front of a model that takes 20 µs per event
    producer = open_live_producer("auto", buffer_pages=1024)
    models = []
    start_ns = int(producer.meta["start_ns"])
    src = LiveSource(producer, queue_events=2_000,
                     model_factory=lambda: models.append(SlowCountingModel(start_ns)) or models[-1])
    stop = threading.Event()
    worker = threading.Thread(target=src.run, args=(lambda msg: None, stop.is_set), daemon=True)
    worker.start()
    try:
        subprocess.run(["taskset", "-c", "0", "perf", "bench", "sched", "pipe", "-l", "200000"],
                       capture_output=True, check=True, timeout=200)
        # the storm is over and the model gets fast (so that nothing, not even another job's
        # storm on this machine, overflows the ring any more): it catches up, and the losses it
        # was told of must come to exactly what the BPF side counted
        model = models[0]
        model.slow = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lost_bpf = producer.session.bpf_counters()["bpf_lost"]
            if model.lost_seen == lost_bpf and src.batches.empty():
                break
            time.sleep(0.2)
        assert lost_bpf > 0, ("the ring never overflowed: the test proves nothing "
                              f"(waited {src.batches.wait_s:.1f} s)")
        assert model.lost_seen == lost_bpf                # every lost event reported, exactly
        assert src.batches.wait_s > 0                     # the capture waited for the model
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()
    # nothing dropped between ring and model (what was still queued at the stop is counted)
    assert src.fed_events + src.unfed_at_exit == src.captured_events
    delivered = model.records - model.lost_records - model.proc_records
    counters = producer.counters                          # at the end, after the final drain
    assert 0 < delivered <= counters["bpf_events"] - counters["bpf_lost"]
