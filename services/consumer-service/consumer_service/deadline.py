"""Max frame age for live streams, decided when a batch is about to go to inference.

A frame sent now waits for every frame already in inference, then its own batch: its round trip
is about (frames in inference, its batch included) x (ms per frame). The cost per frame is learnt
from finished batches. Frames that would outlive the max age before their result exists are
skipped (and counted) instead of being sent, so under overload a live stream's latency stays
within the limit and the model works on frames that can still be in time.
"""

from __future__ import annotations

from dataclasses import dataclass

# Kept for what follows inference: archive, publish, the reader's fetch.
RESERVE = 0.1


@dataclass
class SendDeadline:
    max_age_ms: int
    ms_per_frame: float = 0.0

    def budget_ms(self, frames_in_inference: int, batch_frames: int) -> float:
        """How old a frame may be when sent, with this many frames ahead of and in its batch."""
        return (1 - RESERVE) * self.max_age_ms - self.ms_per_frame * (frames_in_inference + batch_frames)

    def in_time(self, ages_ms: list[float], frames_in_inference: int) -> list[bool]:
        budget = self.budget_ms(frames_in_inference, len(ages_ms))
        return [age <= budget for age in ages_ms]

    def observe(self, round_trip_ms: float, load: int) -> None:
        """A finished batch: sent with `load` frames in inference (its own included), published
        round_trip_ms later. A slow sample (an outage, a retry) raises the estimate at once; it decays."""
        if load <= 0:
            return
        sample = round_trip_ms / load
        self.ms_per_frame = max(sample, 0.8 * self.ms_per_frame + 0.2 * sample)
