"""CSV tables the training and evaluation commands write: fixed columns, floats in one format, atomic."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medpipes.core.io.atomic import atomic_write_text


def write_csv_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], path: Path, float_format: str) -> Path:
    """``rows`` as CSV with ``columns`` (floats written as ``float_format``, e.g. ``.6g``), atomically; folders are made."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (format(row[k], float_format) if isinstance(row[k], float) else row[k]) for k in columns})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buffer.getvalue())
    return path
