"""Flow fields rendered as colour images, exactly as ``torchvision.utils.flow_to_image`` renders them."""

from __future__ import annotations

import numpy as np

from hmhi_cli.errors import InputError


def _check_flow(flow: np.ndarray) -> None:
    if not isinstance(flow, np.ndarray) or flow.ndim != 3 or flow.shape[2] != 2:
        raise InputError(f"a flow field must be an HxWx2 array, got shape {getattr(flow, 'shape', None)}")


def _colour_wheel() -> np.ndarray:
    """The Middlebury colour wheel (Baker et al.): 55 hues in six ramps between red, yellow,
    green, cyan, blue and magenta, as float32 0-255 RGB rows."""
    ramps = ((15, (255, 0, 0), (255, 255, 0)), (6, (255, 255, 0), (0, 255, 0)), (4, (0, 255, 0), (0, 255, 255)),
             (11, (0, 255, 255), (0, 0, 255)), (13, (0, 0, 255), (255, 0, 255)), (6, (255, 0, 255), (255, 0, 0)))
    rows = []
    for steps, start, end in ramps:
        rising = np.floor(255 * np.arange(steps, dtype=np.float32) / steps)[:, None]
        rows.append(np.asarray(start, np.float32) + np.sign(np.subtract(end, start)).astype(np.float32) * rising)
    return np.concatenate(rows)


_WHEEL = _colour_wheel()


def flow_to_rgb(flow: np.ndarray) -> np.ndarray:
    """Render an HxWx2 flow as an HxWx3 uint8 RGB image, as ``torchvision.utils.flow_to_image``
    does (the tests compare the two): hue is the direction on the Middlebury colour wheel,
    saturation the magnitude relative to this frame's largest flow vector (zero renders white).

    Plain numpy, single-threaded: it runs in the decode/flow thread beside the model, where
    torch's own thread pool would compete with the model's.
    """
    _check_flow(flow)
    flow = np.asarray(flow, dtype=np.float32)
    norm = np.sqrt(np.square(flow[..., 0]) + np.square(flow[..., 1]))
    scale = np.float32(1.0) / (norm.max() + np.finfo(np.float32).eps)
    u, v = flow[..., 0] * scale, flow[..., 1] * scale
    radius = norm * scale
    position = (np.arctan2(-v, -u) / np.float32(np.pi) + 1) / 2 * np.float32(len(_WHEEL) - 1)
    floor = np.floor(position)
    weight = (position - floor)[..., None]
    lower = floor.astype(np.intp)
    upper = np.where(lower + 1 == len(_WHEEL), 0, lower + 1)
    colour = ((1 - weight) * _WHEEL[lower] + weight * _WHEEL[upper]) / np.float32(255)
    colour = 1 - radius[..., None] * (1 - colour)
    return np.floor(np.float32(255) * colour).astype(np.uint8)
