"""Replay of a big recording in the dashboard: memory and the time each way of moving takes.

    .venv/bin/python -m benchmarks.bench_tui_replay --generate 36000000        # a generated trace
    .venv/bin/python -m benchmarks.bench_tui_replay --file storm.fpt [--write]  # any recording

The recording is replayed by the real dashboard (Textual app, headless at 160x48, real model),
driven with keys as a user would: open paused at the start, `g` to the end (everything fed once),
`g` back to the middle (a checkpoint is restored), `←` one second back, `→` one forward, `g` to
10%, then playing at x100 for 3 s. Each time is from the key to the picture at the target. Then
the same "back to the middle" with checkpoints off (fed again from the first event), for the
choice between the two (fputrace/tui/replay.py). RSS is the peak (VmHWM) of the process that
replays (a fresh child: the generator's memory is not counted).

``--generate N`` writes N events from benchmarks/bench_model_tracegen.py (2 CPUs, 256 tasks) with
the real RecordingWriter, in chunks, to a temporary file. ``--write`` appends to benchmarks/TUI.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
S = 1_000_000_000


def generate(path: Path, events: int, stretch: int = 6) -> None:
    """The generator's clock runs ~7M events/s; ``stretch`` spreads its timestamps to about the
    1.2M events/s of the storm that `fputrace record` sees on this host."""
    sys.path.insert(0, str(HERE))
    from bench_model_tracegen import TraceGen
    from fputrace.recording import RecordingWriter
    gen = TraceGen(cpus=2, tasks=256, seed=11, policy="deferred", mode="probe")
    with RecordingWriter(path, dict(gen.meta(), host="bench-generated")) as w:
        for chunk in gen.chunks(events, chunk=1 << 20):
            chunk["ts_ns"] *= stretch
            w.write(chunk)


async def measure(path: str, checkpoints: bool) -> dict:
    from fputrace.tui.app import FputraceApp, parse_time_ns
    from fputrace.tui.replay import open_replay
    kw = {} if checkpoints else {"checkpoint_events": 0}
    t_open = time.monotonic()
    source = open_replay(path, start_ns=0, playing=False, **kw)
    app = FputraceApp(source)
    times: dict[str, float] = {}
    async with app.run_test(size=(160, 48)) as pilot:
        async def at(rel_ns: int, timeout_s: float = 900) -> float:
            rel_ns = max(0, min(rel_ns, source.duration_ns))
            t0 = time.monotonic()
            while not (app.status is not None and app.status.position_ns == rel_ns
                       and app.status.target_ns == rel_ns):
                assert time.monotonic() - t0 < timeout_s, "the replay never got there"
                await pilot.pause(0.02)
            return time.monotonic() - t0

        async def goto(rel_ns: int) -> float:
            text = f"{rel_ns / S:.3f}"
            await pilot.press("g")
            await pilot.pause(0.1)
            await pilot.press(*text, "enter")
            return await at(min(parse_time_ns(text), source.duration_ns)) + 0.1

        await at(0)
        times["open_s"] = time.monotonic() - t_open
        end, mid = source.duration_ns, source.duration_ns // 2
        times["to_end_s"] = await goto(end)
        times["back_to_middle_s"] = await goto(mid)
        if checkpoints:
            here = app.status.position_ns
            await pilot.press("left")
            times["step_back_s"] = await at(here - S)
            await pilot.press("right")
            times["step_forward_s"] = await at(here)
            tenth = end // 10
            times["back_to_tenth_s"] = await goto(tenth)
            await pilot.press(*"+++++")                 # x1 -> x100
            await pilot.press("space")
            start = app.status.position_ns
            await pilot.pause(3.0)
            times["played_x100_trace_s"] = (app.status.position_ns - start) / S
            await pilot.press("space")
        stats = source.stats()
        await pilot.press("q")
    rss = {line.split(":")[0]: int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("Vm")}
    return dict(times, rss_peak_kb=rss["VmHWM"], checkpoints=stats["checkpoints"],
                checkpoint_bytes=stats["checkpoint_bytes"], fed_events=stats["fed_events"])


def child(path: str, checkpoints: bool) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_tui_replay", "--measure", path,
                          *([] if checkpoints else ["--no-checkpoints"])],
                         capture_output=True, text=True, cwd=HERE.parent)
    if out.returncode != 0:
        raise SystemExit(f"measuring failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="a recording to replay")
    src.add_argument("--generate", type=int, metavar="N", help="generate N events first")
    src.add_argument("--measure", help=argparse.SUPPRESS)       # the child that replays
    ap.add_argument("--no-checkpoints", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--write", action="store_true", help="append the result to benchmarks/TUI.md")
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(asyncio.run(measure(args.measure, not args.no_checkpoints))))
        return 0
    with tempfile.TemporaryDirectory(dir="/var/tmp") as d:
        path = args.file
        what = path
        if args.generate:
            path = str(Path(d) / "generated.fpt")
            t0 = time.monotonic()
            generate(Path(path), args.generate)
            what = f"generated ({time.monotonic() - t0:.0f} s to write)"
        from fputrace.recording import open_recording
        rec = open_recording(path, warn=False)
        n, size = rec.num_events, os.path.getsize(path)
        load0 = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        with_cp = child(path, True)
        without = child(path, False)
    line = (f"replay of {n:,} events ({size / 2**20:.0f} MB on disk, {what}): RSS peak "
            f"{with_cp['rss_peak_kb'] // 1024} MB (the events alone would take {n * 40 / 2**20:.0f} MB"
            f" in memory); open {with_cp['open_s']:.1f} s, go to the end {with_cp['to_end_s']:.1f} s,"
            f" back to the middle {with_cp['back_to_middle_s']:.2f} s (checkpoint), a second back "
            f"{with_cp['step_back_s']:.2f} s, forward {with_cp['step_forward_s']:.2f} s, back to 10% "
            f"{with_cp['back_to_tenth_s']:.2f} s; x100 for 3 s covered "
            f"{with_cp['played_x100_trace_s']:.1f} s of trace; {with_cp['checkpoints']} checkpoints "
            f"({with_cp['checkpoint_bytes'] / 2**20:.0f} MB); without checkpoints back to the middle "
            f"takes {without['back_to_middle_s']:.1f} s (RSS peak {without['rss_peak_kb'] // 1024} MB)"
            f" (load average {load0})")
    print(line)
    if args.write:
        with open(HERE / "TUI.md", "a") as f:
            f.write(f"- {time.strftime('%Y-%m-%d %H:%M')} {platform.node()}, {os.cpu_count()} cores: "
                    f"{line}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
