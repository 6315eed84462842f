"""The dashboard's live path under load: does the UI ever make the capture lose events?

A synthetic producer stands in for the ring buffer and hands over batches of realistic events
(benchmarks/bench_model_tracegen.py: a simulated deferred-restore kernel, probe mode, as many CPUs as this host by default) at a
fixed rate on the wall clock, exactly as ``CaptureSession.batches`` would: from its own thread,
never waiting. Everything after it is the real thing: ``LiveSource`` (bounded queue, drop ledger),
the real ``Model`` in the app's worker thread, and the real Textual app drawing every snapshot
headless at 160x48 (so the UI's rendering competes for the GIL as it does on a terminal).

    .venv/bin/python benchmarks/bench_tui_live.py                 # 500k events/s for 10 s
    .venv/bin/python benchmarks/bench_tui_live.py --rate 1e6 --seconds 10 --write

Runs the stream twice: A with the screen frozen (the model alone: what this host sustains), B with
the dashboard drawing. Prints events produced / fed / dropped (must be 0), pictures drawn, time
spent in pictures, and the deepest the queue got (in events, against its bound). The machine is
shared and noisy: compare A and B of the same run, not runs. --write appends to benchmarks/TUI.md.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np

from fputrace.model import Model
from fputrace.tui.app import FputraceApp
from fputrace.tui.sources import LiveSource

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_model_tracegen import TraceGen  # noqa: E402  (a sibling script, not a package)


class PacedReplay:
    """Pre-generated events handed out at ``rate`` events/s in batches of ``batch``."""

    def __init__(self, events: np.ndarray, meta: dict, rate: float, batch: int) -> None:
        self.events, self.meta, self.rate, self.batch = events, meta, rate, batch
        self.sent = 0
        self.t0 = None

    def poll(self, timeout_s: float) -> list[np.ndarray]:
        if self.t0 is None:
            self.t0 = time.monotonic()
        due = min(len(self.events), int((time.monotonic() - self.t0) * self.rate))
        out = []
        while self.sent + self.batch <= due:
            out.append(self.events[self.sent:self.sent + self.batch])
            self.sent += self.batch
        if not out:
            time.sleep(min(timeout_s, self.batch / self.rate / 2))
        return out

    @property
    def done(self) -> bool:
        return self.sent + self.batch > len(self.events)

    def close(self) -> None:
        pass


def generate(total: int, cpus: int = 8) -> tuple[dict, np.ndarray]:
    gen = TraceGen(cpus=cpus, tasks=256, seed=7, policy="deferred", mode="probe")
    events = np.concatenate(list(gen.chunks(total, chunk=1 << 20)))
    meta = dict(gen.meta(), host="bench", kernel_release=platform.release())
    return meta, events


async def drive(source: LiveSource, producer: PacedReplay, seconds: float) -> dict:
    app = FputraceApp(source)
    async with app.run_test(size=(160, 48)) as pilot:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds + 30:
            if producer.done and source.fed_events == source.captured_events \
                    and source.batches.empty():
                break
            await pilot.pause(0.05)
        elapsed = time.monotonic() - t0
        pictures, draw_s = app.pictures, app.draw_s
        await pilot.press("q")
    return {"elapsed_s": elapsed, "pictures": pictures, "draw_s": draw_s}


def without_ui(source: LiveSource, producer: PacedReplay, seconds: float) -> dict:
    stop = threading.Event()
    worker = threading.Thread(target=source.run, args=(lambda msg: None, stop.is_set))
    worker.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds + 60:
        if producer.done and source.fed_events == source.captured_events and source.batches.empty():
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    stop.set()
    worker.join()
    return {"elapsed_s": elapsed}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=500_000, help="events/s (default 500k)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=8192, help="events per poll (ring buffer read)")
    ap.add_argument("--cpus", type=int, default=os.cpu_count(),
                    help="CPUs of the simulated host (default: this host's)")
    ap.add_argument("--write", action="store_true", help="append the result to benchmarks/TUI.md")
    args = ap.parse_args(argv)
    total = int(args.rate * args.seconds)
    print(f"generating {total:,} events...", flush=True)
    meta, events = generate(total, args.cpus)
    warm = Model(meta)                       # JIT-compile the model before the clock starts
    warm.feed(events[:10_000])
    warm.snapshot(10 ** 10)
    # A: the same path with the screen frozen (no pictures): what the model alone sustains here
    producer = PacedReplay(events, meta, args.rate, args.batch)
    source = LiveSource(producer, model_factory=lambda: Model(meta))
    source.paused = True
    print(f"A: model only, {args.rate:,.0f} events/s for {args.seconds:g} s...", flush=True)
    base = without_ui(source, producer, args.seconds)
    print(f"   drained in {base['elapsed_s']:.1f} s, dropped {source.ledger.dropped_events:,} events, "
          f"deepest queue {source.max_queued_events:,}", flush=True)
    # B: the dashboard drawing every picture
    producer = PacedReplay(events, meta, args.rate, args.batch)
    source = LiveSource(producer, model_factory=lambda: Model(meta))
    print(f"B: the dashboard, {args.rate:,.0f} events/s for {args.seconds:g} s...", flush=True)
    res = asyncio.run(drive(source, producer, args.seconds))
    res.update(rate=args.rate, produced=producer.sent, captured=source.captured_events,
               fed=source.fed_events, dropped_batches=source.ledger.dropped_batches,
               dropped_events=source.ledger.dropped_events, batch=args.batch)
    line = (f"model alone drained in {base['elapsed_s']:.1f} s; with the dashboard: "
            f"rate {res['rate']:,.0f} ev/s, {args.cpus} CPUs, batch {res['batch']}: produced {res['produced']:,}, "
            f"fed to the model {res['fed']:,}, dropped {res['dropped_events']:,} events "
            f"({res['dropped_batches']} batches); {res['pictures']} pictures drawn in "
            f"{res['elapsed_s']:.1f} s (model pictures {source.picture_s:.1f} s, drawing them "
            f"{res['draw_s']:.1f} s); deepest queue {source.max_queued_events:,}/{source.queue_events:,} "
            f"events")
    print(line)
    if args.write:
        with open(HERE / "TUI.md", "a") as f:
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            f.write(f"- {time.strftime('%Y-%m-%d %H:%M')} {platform.node()}, "
                    f"{os.cpu_count()} cores, load average {load}: {line}\n")
    return 0 if res["dropped_events"] == 0 and res["fed"] == res["produced"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
