"""Views of the model and of recordings for other tools and for scripts (SPEC 2).

    annotated.py  a recording fed through the model with its per-event annotations (Model.add_sink)
    parquet.py    one row per event, for DuckDB / Spark / Trino (``fputrace export --format parquet``)
    perfetto.py   a Perfetto timeline: register owner per CPU, sections and saves per task, rates
    csv.py        the import format, so import -> export -> import is exact (``--format csv``)
    csv_plan.py   where each task-table record goes in that CSV (carried by a row, or explicit)
    rows.py       what the table exports share: kind and cause names, task names at each row
    feed.py       the model fed live (capture session) or from a recording, for stat and exporter
    intervals.py  per-task increases between two looks at the model (stat lines, exporter counters)
    labels.py     label values bounded to the top N, counters monotonic through evictions
    metrics.py    the Prometheus collector (``fputrace exporter``)
    stat.py       ``fputrace stat`` lines and JSON
    log2hist.py   bcc-style log2 histograms (report text, stat)
    output.py     an export file appears under its name only when complete
"""
