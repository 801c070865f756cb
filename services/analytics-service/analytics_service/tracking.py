"""ByteTrack (Zhang et al., 2022) for one stream: boxes and scores in, track ids out.

supervision 0.31 no longer ships `sv.ByteTrack` (it moved to Roboflow's `trackers` package, which
requires the non-headless `opencv-python` and would clash with the services' headless OpenCV), so
this is a small port of the reference algorithm with supervision's parameter names and meanings:

1. Detections at or above `track_activation_threshold` are matched first, to confirmed tracks that
   are tracked or lost, by IoU with each track's Kalman-predicted box, weighted by the detection's
   score (cost = 1 - IoU x score), accepted when the cost is at most `minimum_matching_threshold`.
2. Detections between 0.1 and the threshold are matched to the tracked ones still unmatched (IoU
   >= 0.5): a low score continues a track but never starts one.
3. Tentative tracks (seen fewer than `minimum_consecutive_frames` frames in a row) are matched to
   the remaining high detections (cost <= 0.7); an unmatched tentative track is dropped.
4. A remaining detection scoring at least `track_activation_threshold + 0.1` starts a track; it is
   confirmed, and gets the next id (1, 2, ...), once seen `minimum_consecutive_frames` frames in a
   row (1: at once; every track of the tracker's first frame is confirmed at once).
5. A track unmatched for more than int(frame_rate / 30 x lost_track_buffer) updates is removed.

Class-agnostic, as ByteTrack is: the caller keeps each track's class. Deterministic: the same
inputs in the same order give the same ids (no randomness, ties resolved by index).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

FloatArray = NDArray[np.float64]

LOW_SCORE = 0.1  # detections at or below are ignored altogether (ByteTrack's lower band)
SECOND_MATCH_COST = 0.5
TENTATIVE_MATCH_COST = 0.7
NEW_TRACK_MARGIN = 0.1
DUPLICATE_COST = 0.15  # a tracked and a lost track overlapping by IoU > 0.85 are one object


class KalmanFilter:
    """Constant-velocity model of (centre x, centre y, aspect w/h, height) and their velocities;
    noise proportional to the box height, as in ByteTrack/DeepSORT."""

    _w_pos = 1.0 / 20
    _w_vel = 1.0 / 160

    def __init__(self) -> None:
        self._motion = np.eye(8)
        for i in range(4):
            self._motion[i, 4 + i] = 1.0
        self._update = np.eye(4, 8)

    def initiate(self, xyah: FloatArray) -> tuple[FloatArray, FloatArray]:
        mean = np.r_[xyah, np.zeros(4)]
        h = xyah[3]
        std = [2 * self._w_pos * h, 2 * self._w_pos * h, 1e-2, 2 * self._w_pos * h]
        std += [10 * self._w_vel * h, 10 * self._w_vel * h, 1e-5, 10 * self._w_vel * h]
        return mean, np.diag(np.square(std))

    def predict(self, mean: FloatArray, cov: FloatArray) -> tuple[FloatArray, FloatArray]:
        h = mean[3]
        std = [self._w_pos * h, self._w_pos * h, 1e-2, self._w_pos * h]
        std += [self._w_vel * h, self._w_vel * h, 1e-5, self._w_vel * h]
        mean = self._motion @ mean
        cov = self._motion @ cov @ self._motion.T + np.diag(np.square(std))
        return mean, cov

    def update(self, mean: FloatArray, cov: FloatArray, xyah: FloatArray) -> tuple[FloatArray, FloatArray]:
        h = mean[3]
        noise = np.diag(np.square([self._w_pos * h, self._w_pos * h, 1e-1, self._w_pos * h]))
        projected_mean = self._update @ mean
        projected_cov = self._update @ cov @ self._update.T + noise
        gain = np.linalg.solve(projected_cov, (cov @ self._update.T).T).T
        mean = mean + (xyah - projected_mean) @ gain.T
        cov = cov - gain @ projected_cov @ gain.T
        return mean, cov


def xyxy_to_xyah(box: FloatArray) -> FloatArray:
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array([box[0] + w / 2, box[1] + h / 2, w / max(h, 1e-6), h])


def xyah_to_xyxy(xyah: FloatArray) -> FloatArray:
    w, h = xyah[2] * xyah[3], xyah[3]
    return np.array([xyah[0] - w / 2, xyah[1] - h / 2, xyah[0] + w / 2, xyah[1] + h / 2])


def iou_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """IoU of every box in a (n, 4) with every box in b (m, 4), xyxy."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def assign(cost: FloatArray, limit: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Minimum-cost matching of rows to columns, keeping pairs with cost <= limit; returns the pairs
    and the unmatched rows and columns, each in index order."""
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return [], list(range(rows)), list(range(cols))
    # Costs above the limit are capped, so they never make the solver trade a good pair for a bad one.
    capped = np.minimum(cost, limit + 1e-4)
    pairs = [(int(r), int(c)) for r, c in zip(*linear_sum_assignment(capped), strict=True) if cost[r, c] <= limit]
    matched_rows, matched_cols = {r for r, _ in pairs}, {c for _, c in pairs}
    return (
        sorted(pairs),
        [r for r in range(rows) if r not in matched_rows],
        [c for c in range(cols) if c not in matched_cols],
    )


class State(Enum):
    TRACKED = 1
    LOST = 2
    REMOVED = 3


@dataclass
class _Track:
    mean: FloatArray
    cov: FloatArray
    first_frame: int
    last_frame: int
    hits: int = 1  # frames in a row with a match (for confirmation)
    state: State = State.TRACKED
    track_id: int = 0  # 0 while tentative
    detection: int = -1  # the index of this update's detection, -1 when unmatched

    @property
    def confirmed(self) -> bool:
        return self.track_id > 0

    def box(self) -> FloatArray:
        return xyah_to_xyxy(self.mean[:4])


@dataclass
class Update:
    """What one update did: confirmed tracks matched to this frame's detections (track id, detection
    index), in track id order; and confirmed tracks removed by this update, in id order."""

    matched: list[tuple[int, int]] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)


class ByteTracker:
    def __init__(
        self,
        track_activation_threshold: float = 0.25,
        lost_track_buffer: int = 30,
        minimum_matching_threshold: float = 0.8,
        frame_rate: int = 30,
        minimum_consecutive_frames: int = 1,
    ) -> None:
        self.activation = track_activation_threshold
        self.match_cost = minimum_matching_threshold
        self.max_lost = int(frame_rate / 30.0 * lost_track_buffer)
        self.min_frames = max(1, minimum_consecutive_frames)
        self.kalman = KalmanFilter()
        self.frame = 0
        self.next_id = 1
        self.tracks: list[_Track] = []  # tracked (confirmed or tentative) and lost, oldest first

    def _confirm(self, track: _Track) -> None:
        if not track.confirmed and (track.hits >= self.min_frames or track.first_frame == 1):
            track.track_id = self.next_id
            self.next_id += 1

    def _match(self, track: _Track, box: FloatArray, index: int) -> None:
        track.mean, track.cov = self.kalman.update(track.mean, track.cov, xyxy_to_xyah(box))
        # A lost track found again starts counting frames in a row afresh; it keeps its id.
        track.hits = track.hits + 1 if track.state is State.TRACKED and track.last_frame == self.frame - 1 else 1
        track.state = State.TRACKED
        track.last_frame = self.frame
        track.detection = index
        self._confirm(track)

    def update(self, boxes: FloatArray, scores: FloatArray) -> Update:
        """One frame: boxes (n, 4) xyxy pixels, scores (n,)."""
        self.frame += 1
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        high = [i for i in range(len(scores)) if scores[i] >= self.activation]
        low = [i for i in range(len(scores)) if LOW_SCORE < scores[i] < self.activation]

        for track in self.tracks:
            track.detection = -1
            if track.state is not State.TRACKED:
                track.mean[7] = 0.0  # a lost box keeps its size while it drifts
            track.mean, track.cov = self.kalman.predict(track.mean, track.cov)

        pool = [t for t in self.tracks if t.confirmed]
        tentative = [t for t in self.tracks if not t.confirmed]

        # 1. high detections against confirmed tracks (tracked or lost), score-weighted IoU
        cost = 1.0 - iou_matrix(np.array([t.box() for t in pool]), boxes[high]) * scores[high][None, :]
        pairs, unmatched_pool, unmatched_high = assign(cost, self.match_cost)
        for p, d in pairs:
            self._match(pool[p], boxes[high[d]], high[d])

        # 2. low detections against the tracked ones still unmatched, plain IoU
        rest = [pool[p] for p in unmatched_pool if pool[p].state is State.TRACKED]
        cost = 1.0 - iou_matrix(np.array([t.box() for t in rest]), boxes[low])
        pairs, unmatched_rest, _ = assign(cost, SECOND_MATCH_COST)
        for r, d in pairs:
            self._match(rest[r], boxes[low[d]], low[d])
        for r in unmatched_rest:
            rest[r].state = State.LOST

        # 3. tentative tracks against the high detections left
        left = [high[d] for d in unmatched_high]
        cost = 1.0 - iou_matrix(np.array([t.box() for t in tentative]), boxes[left]) * scores[left][None, :]
        pairs, unmatched_tentative, unmatched_left = assign(cost, TENTATIVE_MATCH_COST)
        for t, d in pairs:
            self._match(tentative[t], boxes[left[d]], left[d])
        for t in unmatched_tentative:
            tentative[t].state = State.REMOVED

        # 4. new tracks
        for d in unmatched_left:
            index = left[d]
            if scores[index] < self.activation + NEW_TRACK_MARGIN:
                continue
            mean, cov = self.kalman.initiate(xyxy_to_xyah(boxes[index]))
            track = _Track(mean, cov, first_frame=self.frame, last_frame=self.frame, detection=index)
            self._confirm(track)
            self.tracks.append(track)

        # 5. lost too long
        for track in self.tracks:
            if track.state is State.LOST and self.frame - track.last_frame > self.max_lost:
                track.state = State.REMOVED
        self._drop_duplicates()

        removed = sorted(t.track_id for t in self.tracks if t.state is State.REMOVED and t.confirmed)
        self.tracks = [t for t in self.tracks if t.state is not State.REMOVED]
        matched = sorted((t.track_id, t.detection) for t in self.tracks if t.confirmed and t.last_frame == self.frame)
        return Update(matched=matched, removed=removed)

    def _drop_duplicates(self) -> None:
        """A tracked and a lost track on the same box: keep the one tracked longer (ByteTrack)."""
        tracked = [t for t in self.tracks if t.state is State.TRACKED]
        lost = [t for t in self.tracks if t.state is State.LOST]
        if not tracked or not lost:
            return
        overlap = iou_matrix(np.array([t.box() for t in tracked]), np.array([t.box() for t in lost]))
        for i, j in zip(*np.nonzero(1.0 - overlap < DUPLICATE_COST), strict=True):
            a, b = tracked[int(i)], lost[int(j)]
            if a.state is State.REMOVED or b.state is State.REMOVED:
                continue
            if a.last_frame - a.first_frame > b.last_frame - b.first_frame:
                b.state = State.REMOVED
            else:
                a.state = State.REMOVED
