"""Frame sources: video file, RTSP (or other network) stream, webcam, image folder.

File and folder sources end (or loop); live sources reconnect with backoff until stopped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from vidpipe.backoff import Backoff
from vidpipe.redact import redact_url, split_url

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class SourceError(RuntimeError):
    """The source cannot be read; the message says which and why."""


@dataclass(slots=True)
class Frame:
    image: np.ndarray  # BGR, as OpenCV reads it
    timestamp_s: float  # position on the source's own timeline (drives sampling and pacing)
    capture_ts_us: int  # wall-clock time the frame was read (drives end-to-end latency)


class FrameSource(Protocol):
    # Read-only to the publisher, so a source may declare narrower types (a file's fps is a float).
    @property
    def name(self) -> str: ...

    @property
    def live(self) -> bool: ...

    @property
    def fps(self) -> float | None: ...

    @property
    def frame_count(self) -> int | None: ...

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


def _now_us() -> int:
    return time.time_ns() // 1000


class VideoFileSource:
    live = False

    def __init__(self, path: str, loop: bool = False):
        self.path = Path(path)
        if not self.path.exists():
            raise SourceError(f"video file {path} does not exist")
        if not self.path.is_file():
            raise SourceError(f"{path} is not a file")
        self.name = self.path.stem
        self.loop = loop
        capture = self._open()
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        self.fps = fps if fps and 0 < fps < 1000 else 25.0
        self.frame_count = count if count > 0 else None

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise SourceError(f"cannot open {self.path}: not a video, corrupt, or an unsupported codec")
        return capture

    def frames(self) -> Iterator[Frame]:
        offset_s = 0.0
        while True:
            capture = self._open()
            read = 0
            try:
                while True:
                    ok, image = capture.read()
                    if not ok:
                        break
                    yield Frame(image, offset_s + read / self.fps, _now_us())
                    read += 1
            finally:
                capture.release()
            if read == 0:
                raise SourceError(f"no frame could be decoded from {self.path}: corrupt or unsupported video")
            if self.frame_count and read < self.frame_count - max(2, self.frame_count // 100):
                raise SourceError(
                    f"{self.path} ended after {read} of its {self.frame_count} frames: the file is truncated or corrupt"
                )
            if not self.loop:
                return
            offset_s += read / self.fps

    def close(self) -> None:
        pass


class ImageFolderSource:
    live = False
    frame_count: int | None

    def __init__(self, path: str, loop: bool = False, fps: float = 10.0):
        folder = Path(path)
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise SourceError(f"image folder {path} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.name = folder.name
        self.loop = loop
        self.fps = fps
        self.frame_count = len(self.files)
        self.unreadable = 0

    def frames(self) -> Iterator[Frame]:
        index = 0
        while True:
            decoded_any = False
            for path in self.files:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    self.unreadable += 1
                    log.warning("skipping %s: not a readable image", path)
                    continue
                decoded_any = True
                yield Frame(image, index / self.fps, _now_us())
                index += 1
            if not decoded_any:
                raise SourceError(
                    f"none of the {len(self.files)} files in {self.files[0].parent} could be read as an image"
                )
            if not self.loop:
                return

    def close(self) -> None:
        pass


class LiveSource:
    """An RTSP/network stream or a webcam: reconnects with jittered exponential backoff."""

    live = True
    frame_count = None

    def __init__(
        self,
        target: str | int,
        name: str,
        stop: threading.Event,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        open_timeout_ms: int = 5000,
        must_open_first: bool = False,
        resolve: Callable[[], str] | None = None,
    ):
        self.target = target
        # Reads the source again before each reconnect (a mounted Secret is updated in place); its
        # SourceError counts as a failed attempt.
        self.resolve = resolve
        # A local device that is absent at start is a configuration error, not an outage to wait out.
        self.must_open_first = must_open_first
        self.name = name
        self.stop = stop
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.open_timeout_ms = open_timeout_ms
        self.fps: float | None = None
        self.reconnects = 0
        self.connected = False
        self.last_error: str | None = None  # why the last attempt failed (redacted); None once frames flow

    def _open(self) -> cv2.VideoCapture | None:
        if self.resolve is not None and self.reconnects:
            try:
                self.target = self.resolve()
            except SourceError as exc:
                self.last_error = str(exc)
                return None
        if isinstance(self.target, int):
            capture = cv2.VideoCapture(self.target)
        else:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                self.open_timeout_ms,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                self.open_timeout_ms,
            ]
            capture = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            self.last_error = f"cannot open {self._shown()}"
            return None
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else self.fps
        return capture

    def frames(self) -> Iterator[Frame]:
        backoff = Backoff(self.initial_backoff_s, self.max_backoff_s)
        start = time.monotonic()
        while not self.stop.is_set():
            capture = self._open()
            if capture is None and self.must_open_first and self.reconnects == 0:
                raise SourceError(f"cannot open {self._shown()}: no such device, or it is in use")
            delay = 0.0
            if capture is None:
                delay = backoff.next()
                log.warning("cannot open %s; reconnecting in %.1fs", self._shown(), delay)
            else:
                log.info("connected to %s", self._shown())
                try:
                    while not self.stop.is_set():
                        ok, image = capture.read()
                        if not ok:
                            delay = backoff.next()
                            self.last_error = f"lost {self._shown()}"
                            log.warning("lost %s; reconnecting in %.1fs", self._shown(), delay)
                            break
                        backoff.reset()
                        self.connected, self.last_error = True, None
                        yield Frame(image, time.monotonic() - start, _now_us())
                finally:
                    self.connected = False
                    capture.release()
            if self.stop.wait(delay):
                return
            self.reconnects += 1

    def _shown(self) -> str:
        if isinstance(self.target, int):
            return f"webcam {self.target}"
        return redact_url(self.target)  # never credentials or query values

    def close(self) -> None:
        self.stop.set()


def is_network(uri: str) -> bool:
    return uri.lower().startswith(NETWORK_SCHEMES)


def default_stream_id(uri: str) -> str:
    """The stream id a source gets when none is given, verbatim (not yet validated, never mapped):
    a URL's host[:port] and path (never its userinfo or query), a file's stem, a folder's name,
    webcam<N> for a webcam."""
    parts = split_url(redact_url(uri))  # from the redacted form: an unparseable authority is "***"
    if parts is not None:
        _scheme, _userinfo, authority, url_path, _tail = parts
        return (authority + url_path).rstrip("/")
    webcam = uri[len("webcam:") :] if uri.startswith("webcam:") else uri
    if webcam.isdigit():
        return f"webcam{webcam}"
    path = Path(uri)
    if os.path.isdir(uri):
        return path.name or path.resolve().name
    return path.stem


def open_source(
    uri: str,
    loop: bool,
    stop: threading.Event,
    target_fps: float = 0.0,
    initial_backoff_s: float = 0.5,
    max_backoff_s: float = 30.0,
    resolve: Callable[[], str] | None = None,
) -> FrameSource:
    """resolve: for a network source, reads the source again before each reconnect (see LiveSource)."""
    if is_network(uri):
        name = default_stream_id(uri) or "stream"
        return LiveSource(uri, name, stop, initial_backoff_s, max_backoff_s, resolve=resolve)
    webcam = uri[len("webcam:") :] if uri.startswith("webcam:") else uri
    if webcam.isdigit():
        return LiveSource(int(webcam), f"webcam{webcam}", stop, initial_backoff_s, max_backoff_s, must_open_first=True)
    if os.path.isdir(uri):
        return ImageFolderSource(uri, loop, fps=target_fps or 10.0)
    return VideoFileSource(uri, loop)
