"""Views of the model and of recordings for other tools (SPEC 2: timelines, fleets, scripts).

    parquet.py    one row per event, for DuckDB / Spark / Trino (``fputrace export --format parquet``)
    csv.py        the import format, so import -> export -> import is exact (``--format csv``)
    rows.py       what both need: kind and cause names, task names at the time of each row
"""
