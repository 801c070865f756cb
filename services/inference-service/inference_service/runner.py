"""The model's runs, between the batcher and the decoders: batches of prepared images in, per image its
decoded result or its failure out."""

from __future__ import annotations

import logging
import queue
from typing import Any

import numpy as np

from .model import LoadedModel
from .preprocess import InputBuffer, PreparedImage, one_line

log = logging.getLogger(__name__)


class InferenceFailure:
    """An image the model failed on when run alone: that image's error, not its batch's."""

    __slots__ = ("message",)

    def __init__(self, message: str):
        self.message = message


# Per image: the decoded result (width, height and the decoder's fields), or why the model failed on it.
InferenceResult = dict[str, Any] | InferenceFailure
# Per image, out of ModelRunner.run: (the outputs of its batch's run, its index in them), or its failure.
RunSlot = tuple[dict[str, np.ndarray], int] | InferenceFailure


class ModelRunner:
    """Fills a reusable input tensor and runs the model on one of its instances (on a batcher worker
    thread, one worker per instance); decoding the outputs happens in finish(), on a finisher thread.

    A model run that raises is retried image by image, so one input the model cannot take fails
    alone (InferenceFailure) and the others in its batch still get their results."""

    def __init__(self, model: LoadedModel, max_batch: int):
        self.model = model
        self.capacity = model.input.fixed_batch or max_batch
        self._free: queue.SimpleQueue[tuple[int, InputBuffer]] = queue.SimpleQueue()
        self._fill_pool()

    def _fill_pool(self) -> None:
        self._free = queue.SimpleQueue()
        for instance in range(self.model.instances):
            self._free.put((instance, InputBuffer(self.model.input, self.capacity)))

    def warm_up(self) -> None:
        """One run at the largest batch on every instance, so the runtime allocates its memory at
        start-up, not under the first full batch (memory stays flat afterwards) and no request pays for
        it. A model whose batch axis is declared dynamic but only runs one image at a time (a reshape
        inside, say) is served one image per run rather than failing every batch."""
        try:
            self._warm_all()
        except Exception as exc:
            if self.model.input.fixed_batch is not None or self.capacity == 1:
                raise
            log.warning(
                "model failed a run of %d blank images (%s); trying one image per run", self.capacity, one_line(exc)
            )
            self.capacity = 1
            self._fill_pool()
            self._warm_all()
            log.warning("model runs one image at a time: serving with batches of 1")

    def _warm_all(self) -> None:
        held = [self._free.get() for _ in range(self.model.instances)]
        try:
            for instance, buffer in held:
                self.model.run(buffer.blank(), instance)
        finally:
            for pair in held:
                self._free.put(pair)

    def run(self, images: list[PreparedImage]) -> list[RunSlot]:
        """Per image: (the outputs of its run, its index in them), or InferenceFailure."""
        instance, buffer = self._free.get()  # one worker per instance: never waits long
        try:
            return self._run_on(instance, buffer, images)
        finally:
            self._free.put((instance, buffer))

    def _run_on(self, instance: int, buffer: InputBuffer, images: list[PreparedImage]) -> list[RunSlot]:
        slots: list[RunSlot] = []
        for start in range(0, len(images), self.capacity):
            chunk = images[start : start + self.capacity]
            try:
                outputs = self.model.run(buffer.fill(chunk), instance)
            except Exception as exc:  # the runtime raises for inputs it cannot run: find which
                if len(chunk) > 1:
                    log.warning(
                        "model failed on a batch of %d images (%s); running them one by one", len(chunk), one_line(exc)
                    )
                slots.extend(
                    self._run_alone(instance, buffer, image, exc if len(chunk) == 1 else None) for image in chunk
                )
                continue
            slots.extend((outputs, index) for index in range(len(chunk)))
        return slots

    def _run_alone(self, instance: int, buffer: InputBuffer, image: PreparedImage, failed: Exception | None) -> RunSlot:
        if failed is None:
            try:
                return self.model.run(buffer.fill([image]), instance), 0
            except Exception as exc:
                failed = exc
        log.warning("model failed on an image of %dx%d: %s", image.width, image.height, one_line(failed))
        return InferenceFailure(f"the model failed on this image: {one_line(failed)}")

    def finish(self, images: list[PreparedImage], slots: list[RunSlot]) -> list[InferenceResult]:
        results: list[InferenceResult] = []
        for image, slot in zip(images, slots, strict=True):
            if isinstance(slot, InferenceFailure):
                results.append(slot)
                continue
            outputs, index = slot
            try:
                decoded = self.model.decoder.decode(outputs, index, image.width, image.height)
            except Exception as exc:
                log.warning("model outputs could not be decoded: %s", one_line(exc))
                results.append(
                    InferenceFailure(f"the model's outputs for this image could not be decoded: {one_line(exc)}")
                )
                continue
            results.append({"width": image.width, "height": image.height, **decoded})
        return results
