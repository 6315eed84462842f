"""``fputrace exporter``: this host's FPU save/restore traffic as Prometheus metrics."""
from __future__ import annotations

import argparse
import ipaddress
import re

from .argtypes import number

HELP = "serve live FPU save/restore metrics to Prometheus (needs root; --replay FILE does not)"
DEFAULT_LISTEN = "127.0.0.1:9477"
DEFAULT_TOP_COMMS = 20             # label values per metric: 20 names x 7 causes + other
DEFAULT_TOP_CALLERS = 20
EXAMPLES = f"""examples:
    sudo fputrace exporter                          # http://{DEFAULT_LISTEN}/metrics
    sudo fputrace exporter --listen 0.0.0.0:9477    # reachable from the network (mind who can read it)
    sudo fputrace exporter --top-comms 50 --mode tracepoint
    fputrace exporter --replay run.fpt              # a recording's totals, no root (demos, tests)
    fputrace exporter --replay run.fpt --speed 1    # ... played at its own pace: rates as live
    curl -s http://{DEFAULT_LISTEN}/metrics | grep ^fputrace_xsave_total

Task names and kernel-FPU callers are label values: the --top-comms / --top-callers busiest get a
series of their own, all others are counted under "other" (counters never go down, also when a
name leaves the top and comes back: see README). A Grafana dashboard for these metrics is in
dashboards/fputrace-grafana.json. SIGTERM or Ctrl-C detaches every probe and exits.
"""


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT or :PORT (= 127.0.0.1). Port 0 = any free port (printed)."""
    m = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]*)):(\d{1,5})", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid address {text!r} (examples: 127.0.0.1:9477, "
                                         f"[::1]:9477, :9477)")
    host = m.group(1) or m.group(2) or "127.0.0.1"
    port = int(m.group(3))
    if port > 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port} in {text!r} (0..65535)")
    if m.group(1):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid IPv6 address {host!r} in {text!r}") from None
    elif not re.fullmatch(r"[A-Za-z0-9.-]+", host):
        raise argparse.ArgumentTypeError(f"invalid host {host!r} in {text!r}")
    return host, port


_speed = number(float, 0, above=True, maximum=1e6)
_top = number(int, 0)


def add_arguments(p) -> None:
    p.add_argument("-l", "--listen", type=parse_listen, default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"where to serve /metrics (default {DEFAULT_LISTEN}: this host only)")
    p.add_argument("--replay", metavar="FILE", help="serve the totals of a recording instead of "
                   "tracing live (no root needed)")
    p.add_argument("--speed", type=_speed, metavar="X", help="with --replay: play the recording at "
                   "X times its own pace instead of serving its totals at once (rates as live)")
    p.add_argument("-m", "--mode", default="auto", choices=["auto", "fentry", "kprobe", "tracepoint"],
                   help="live attach mode (default auto: the best this kernel allows, per event)")
    p.add_argument("--top-comms", type=_top, default=DEFAULT_TOP_COMMS, metavar="N",
                   help=f"task names with a series of their own (default {DEFAULT_TOP_COMMS})")
    p.add_argument("--top-callers", type=_top, default=DEFAULT_TOP_CALLERS, metavar="N",
                   help=f"kernel-FPU callers with a series of their own (default {DEFAULT_TOP_CALLERS})")


def _serve(registry, host: str, port: int):
    import errno

    from prometheus_client import start_http_server

    from ..errors import FputraceError
    try:
        return start_http_server(port, addr=host, registry=registry)
    except OSError as err:
        what = {errno.EADDRINUSE: "the port is in use (is another exporter running? choose "
                                  "another with --listen)",
                errno.EADDRNOTAVAIL: "no interface of this host has that address",
                errno.EACCES: "permission denied (ports below 1024 need root)"}.get(
                    err.errno, err.strerror or str(err))
        raise FputraceError(f"cannot listen on {host}:{port}: {what}") from None


def run(args) -> int:
    import signal
    import sys
    import threading

    from prometheus_client import CollectorRegistry
    from prometheus_client.process_collector import ProcessCollector

    from ..errors import CaptureError
    from ..export.metrics import ModelCollector

    from ..errors import UsageError
    if args.speed and not args.replay:
        raise UsageError("--speed plays a recording: give --replay FILE")
    host, port = args.listen
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)          # the exporter's own CPU time and memory
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    server = feed = None
    try:
        server, _ = _serve(registry, host, port)  # before the probes: a taken port fails fast
        if args.replay:
            from ..export.feed import ReplayFeed
            feed = ReplayFeed(args.replay, speed=args.speed).start()
        else:
            from ..capture import CaptureOptions
            from ..export.feed import LiveFeed
            feed = LiveFeed(CaptureOptions(mode=args.mode)).start()
        registry.register(ModelCollector(feed, top_comms=args.top_comms, top_callers=args.top_callers))
        shown = f"[{host}]" if ":" in host else host
        what = (f"live metrics (mode: {feed.meta.get('capture_mode')})" if not args.replay else
                f"{args.replay} at {args.speed:g}x its pace" if args.speed else
                f"the totals of {args.replay}")
        print(f"Serving {what} on http://{shown}:{server.server_port}/metrics ... Hit Ctrl-C to end.",
              file=sys.stderr, flush=True)
        replayed = False
        while not stop.wait(0.2):
            if feed.error is not None:
                raise CaptureError(f"{'live capture' if feed.live else 'replay'} failed: {feed.error}")
            if args.speed and not replayed and feed.finished.is_set():
                replayed = True
                print(f"fputrace: {args.replay} replayed to its end; serving its totals",
                      file=sys.stderr, flush=True)
        return 0
    finally:
        if feed is not None:
            feed.close()                           # detaches every probe, drains the ring
        if server is not None:
            server.shutdown()
            server.server_close()
        for s, h in old.items():
            signal.signal(s, h)
