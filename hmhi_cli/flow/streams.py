"""Flow over a stream of frames: each frame paired with the frame its flow goes to, one frame ahead."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np

from hmhi_cli.flow.estimators import FlowEstimator, _check_pair
from hmhi_cli.flow.render import flow_to_rgb


class FlowFrame(NamedTuple):
    """One frame with the flow HMHI-Net pairs it with."""

    frame: np.ndarray  # HxWx3 uint8 RGB
    flow_rgb: np.ndarray  # HxWx3 uint8, flow rendered by flow_to_rgb
    flow_raw: np.ndarray  # HxWx2 float32 (dx, dy) in pixels


def flow_partners(frames: Iterable[np.ndarray],
                  after_last: Callable[[], np.ndarray | None] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Each frame in order with the frame its flow goes to: the next one, for the last frame the
    one ``after_last()`` gives (the frame after a part of a video), else the previous one, None
    for a one-frame video. Reads one frame ahead, so memory does not grow with the video length."""
    iterator = iter(frames)
    current = next(iterator, None)
    if current is None:
        return
    previous = None
    for following in iterator:
        yield current, following
        previous, current = current, following
    following = after_last() if after_last else None
    yield current, previous if following is None else following


def flow_images(frames: Iterable[np.ndarray], estimator: FlowEstimator) -> Iterator[FlowFrame]:
    """Yield each frame with its flow at the frame's size (see :func:`flow_partners`); a
    one-frame video gets a zero flow."""
    for frame, partner in flow_partners(frames):
        if partner is None:
            _check_pair(frame, frame)
            flow = np.zeros((*frame.shape[:2], 2), dtype=np.float32)
        else:
            flow = estimator.estimate(frame, partner)
        yield FlowFrame(frame, flow_to_rgb(flow), flow)


def model_flow_images(frames: Iterable[np.ndarray], estimator: FlowEstimator, size: int,
                      after_last: Callable[[], np.ndarray | None] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield each frame with its flow image as the model sees it (:meth:`FlowEstimator.flow_image`);
    ``after_last`` as in :func:`flow_partners`."""
    for frame, partner in flow_partners(frames, after_last):
        yield frame, estimator.flow_image(frame, partner, size)
