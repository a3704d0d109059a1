"""Callbacks: code of yours that `Trainer.fit(..., callbacks=[...])` calls while it trains.

A callback is any object with some of these methods (each optional; `Callback` is a base class with all three):

    on_train_start(members, step, history)   before the first chunk; `history` holds the records so far (a resumed
                                             run's, else empty), `step` the step training starts from
    on_chunk_end(step, records)              after every chunk, once its checkpoint is written; `records` are the
                                             chunk's new rows (step, member, seed, metric, value)
    on_train_end(result)                     with the TrainResult

They run on the host between compiled chunks, so they see every metric the engine records (train_loss, test_loss,
the metrics_fn's, alive) at each chunk boundary and cost nothing inside the program. `MetricsLog` appends the rows to
a CSV file as training goes, so a long run can be watched (`tail -f`) and a killed one keeps its curves;
`mesalab.train.trackers` has adapters for TensorBoard, Weights & Biases and MLflow.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

Record = tuple[int, int, int, str, float]  # (step, member, seed, metric, value)
COLUMNS = ("step", "member", "seed", "metric", "value")


class Callback:
    """Base class with every hook doing nothing; subclass and override what you need."""

    def on_train_start(self, members: Sequence[Any], step: int, history: Sequence[Record]) -> None:
        pass

    def on_chunk_end(self, step: int, records: Sequence[Record]) -> None:
        pass

    def on_train_end(self, result: Any) -> None:
        pass


def notify(callbacks: Iterable[Any], hook: str, *args: Any) -> None:
    """Call `hook` on every callback that defines it."""
    for cb in callbacks:
        method = getattr(cb, hook, None)
        if method is not None:
            method(*args)


class MetricsLog(Callback):
    """Rows appended to a CSV file (columns step, member, seed, metric, value[, part]) at every chunk boundary.

    At the start the file is rewritten with the history so far, so after a resume it holds exactly the resumed run's
    rows, whatever a killed process had appended after its last checkpoint. Each append is flushed and fsynced; the
    file is created with the process's umask, so others can read it."""

    def __init__(self, path: str | Path, part: str | None = None):
        self.path, self.part = Path(path), part

    def _rows(self, records: Sequence[Record]) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for r in records:
            writer.writerow((*r[:4], repr(float(r[4]))) + ((self.part,) if self.part is not None else ()))
        return buf.getvalue()

    def on_train_start(self, members: Sequence[Any], step: int, history: Sequence[Record]) -> None:
        from mesalab.store import write_text  # atomic: a reader never sees half a header

        header = ",".join(COLUMNS + (("part",) if self.part is not None else ())) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text(self.path, header + self._rows(history))

    def on_chunk_end(self, step: int, records: Sequence[Record]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(self._rows(records))
            f.flush()
            os.fsync(f.fileno())


def read_metrics_log(path: str | Path) -> Any:
    """A MetricsLog file as a DataFrame (a last line cut short by a killed process is dropped)."""
    import pandas as pd

    text = Path(path).read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    # The written repr, bit for bit: pandas < 3 needs asking (its default parser can lose the last bit); pandas 3
    # parses round-trip by default and deprecates the option.
    exact = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
    return pd.read_csv(io.StringIO(text), **exact)
