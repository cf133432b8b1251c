"""`--time-budget`: how many epochs of ConvLSTM training fit in the minutes given to the whole command.

An epoch's cost depends on the machine by a factor of ten or more (245-275 s per epoch of the cpu
preset on one 2-core AVX2 machine, a fraction of that on another), so a fixed epoch count that
suits one machine overruns on the next. On a CPU the first epoch is mostly tracing: the unrolled
forecaster and its gradient take about 45 s to trace on a 2-core machine, against 6.5 s for each
later epoch of 40 sequences; the evaluation after training traces the rollout again (about half
the training's tracing, `FINISH_SHARE`) and the report adds `FINISH_S`. So the plan takes the
steady cost of an epoch from the first epoch's median batch, the tracing from the rest of it,
keeps back what the evaluation and report will need, and plans the epochs that fit in what is
left; after every later epoch it plans again from that epoch's own time. Scheduled sampling's
ramp follows the plan (`model.teacher_probability`), so a shortened run still ends on its own
predictions. The first epoch always runs, whatever the budget: the run needs one scored epoch.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

FINISH_SHARE = 0.6  # the evaluation's tracing, as a share of the training's (measured: about 0.5)
FINISH_S = 20.0  # loading the best model, scores, figures, GIFs and pages
VALIDATION_SHARE = 0.15  # an epoch's validation pass, as a share of its training batches (forward only, few)


@dataclass
class EpochPlan:
    """The epochs planned within `budget_s` seconds of a command that started at `started` (time.perf_counter)."""

    budget_s: float
    started: float
    max_epochs: int
    planned: int = 0  # 0 until the first epoch has been timed: then `max_epochs` stands
    epoch_s: float = 0.0  # the estimated steady cost of one epoch
    trace_s: float = 0.0  # what the first epoch spent beyond that: tracing
    stopped: bool = False  # the budget ended training before `max_epochs` (and before early stopping)
    notes: list = field(default_factory=list)

    @property
    def epochs(self) -> int:
        """The epochs training is planned to run (for the ramp of scheduled sampling)."""
        return self.planned or self.max_epochs

    def finish_s(self) -> float:
        """What the evaluation and report after training are expected to take."""
        return FINISH_SHARE * self.trace_s + FINISH_S

    def after_epoch(self, epoch: int, seconds: float, batch_seconds: list[float], now: float) -> bool:
        """Plan again after epoch `epoch` (from 0) took `seconds`; True when another epoch fits in the budget."""
        if epoch == 0:
            steady = statistics.median(batch_seconds) * len(batch_seconds) if len(batch_seconds) >= 3 else seconds
            self.epoch_s = min(seconds, steady * (1 + VALIDATION_SHARE))
            self.trace_s = max(0.0, seconds - self.epoch_s)
        else:
            self.epoch_s = seconds
        left = self.budget_s - (now - self.started) - self.finish_s()
        fits = max(0, math.floor(left / self.epoch_s)) if self.epoch_s > 0 else self.max_epochs
        self.planned = min(self.max_epochs, epoch + 1 + fits)
        more = self.planned > epoch + 1
        if not more and epoch + 1 < self.max_epochs:
            self.stopped = True
        return more

    def summary(self) -> dict:
        """What the plan did, for the run's metrics and report."""
        return {
            "time_budget_minutes": round(self.budget_s / 60, 2),
            "epochs_planned": self.epochs,
            "estimated_epoch_seconds": round(self.epoch_s, 1),
            "tracing_seconds": round(self.trace_s, 1),
            "stopped_by_time_budget": self.stopped,
        }
