"""Learning-rate schedules as a pure function of the step (so resuming is exact).

``LRSchedule.factor(step)`` multiplies the peak lr for optimizer step ``step`` (0-based):
linear warm-up, then cosine decay to 0, step decay at milestones, or constant. The
paper's ResNet-110 warm-up rule ("0.01 until training error < 80 %", Sec. 4.2) is data-
dependent state (``hold_low``), saved in checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class LRSchedule:
    kind: str  # cosine | step | constant
    total_steps: int  # optimizer steps in the whole run
    steps_per_epoch: int
    warmup_steps: int = 0  # linear warm-up length
    milestones: tuple[int, ...] = ()  # in steps
    gamma: float = 0.1
    hold_low: bool = False  # Sec. 4.2 R-110 warm-up: lr x 0.1 while True
    hold_until_error: float = 0.0  # release hold_low once the training error is below this

    @classmethod
    def from_config(cls, cfg, steps_per_epoch: int, total_steps: int) -> LRSchedule:
        scale = steps_per_epoch if cfg.milestone_unit == "epoch" else 1
        return cls(kind=cfg.schedule, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                   warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
                   milestones=tuple(int(m) * scale for m in cfg.milestones), gamma=cfg.gamma,
                   hold_low=cfg.warmup_until_error > 0, hold_until_error=cfg.warmup_until_error)

    def factor(self, step: int) -> float:
        f = 1.0
        if step < self.warmup_steps:
            f = (step + 1) / self.warmup_steps
        elif self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            f = 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - self.warmup_steps) / span)))
        elif self.kind == "step":
            f = self.gamma ** sum(step >= m for m in self.milestones)
        return f * (0.1 if self.hold_low else 1.0)

    def observe_train_error(self, error: float) -> None:
        """Sec. 4.2: once the running training error is below the threshold, use the full lr."""
        if self.hold_low and error < self.hold_until_error:
            self.hold_low = False

    def state_dict(self) -> dict:
        return {"hold_low": self.hold_low}

    def load_state_dict(self, state: dict) -> None:
        self.hold_low = bool(state.get("hold_low", False))
