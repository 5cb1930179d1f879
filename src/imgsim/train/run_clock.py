"""How far a training run is and how long it has left: measured epochs, extrapolated."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


def duration(seconds: float) -> str:
    """A length of time as a person says it: 45 s, 3 min 20 s, 2 h 05 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass
class RunClock:
    """Times the epochs this process trains, to tell the time left across the whole run.

    `first_epoch`: the first epoch trained here (a resumed run starts past 1), so only the
    epochs actually timed count toward the speed.
    """

    epochs: int
    first_epoch: int = 1
    started: float = field(default_factory=time.monotonic)

    def seconds_per_epoch(self, epoch: int) -> float:
        """Mean wall time of the epochs timed so far, validation and checkpoints included."""
        done = max(1, epoch - self.first_epoch + 1)
        return (time.monotonic() - self.started) / done

    def left(self, epoch: int) -> float:
        """Seconds the epochs after `epoch` should take, at the speed measured so far."""
        return self.seconds_per_epoch(epoch) * max(0, self.epochs - epoch)

    def progress(self, epoch: int) -> str:
        """`epoch` done: the run's share done and the time left, e.g. '40 % of the run, ...'."""
        share = epoch / max(1, self.epochs)
        left = self.left(epoch)
        finish = time.strftime("%H:%M", time.localtime(time.time() + left))
        return f"{share:.0%} of the run done, about {duration(left)} left (ETA {finish})"

    def estimate(self, epoch: int) -> str:
        """The whole run's length, said once the first epoch has been timed."""
        per_epoch = self.seconds_per_epoch(epoch)
        return (
            f"Estimated training time: {duration(per_epoch * self.epochs)} for "
            f"{self.epochs} epochs ({duration(per_epoch)} per epoch on this machine)"
        )
