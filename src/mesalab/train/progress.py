"""A rich progress bar showing steps, the ensemble's mean loss and model-steps per second."""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn


class Progress:
    """model-steps/s counts one optimizer step of one ensemble member as one model-step."""

    def __init__(self, total: int, members: int, *, enabled: bool = True, start: int = 0, label: str = "train"):
        self.members, self.start, self.t0 = members, start, time.perf_counter()
        self.bar = None
        if enabled:
            self.bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} model-steps/s"),
                TimeRemainingColumn(), transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task(f"{label} ×{members}", total=total, completed=start, loss="–", rate="–")

    def update(self, step: int, loss: float) -> None:
        if self.bar is None:
            return
        rate = (step - self.start) * self.members / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(self.task, completed=step, loss=f"{loss:.4g}", rate=f"{rate:,.0f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
