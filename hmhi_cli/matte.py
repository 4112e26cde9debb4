"""Alpha mattes an editor can use, made from the model's soft map and the frame.

The model's soft map is blurry (it comes from a 256 x 256 grid) and often unsure inside the
object, so used as alpha it lets the background show through the object and fades the edges
over many pixels. :func:`refine` makes the default matte instead, at the source's full
resolution: the soft map is sharpened around the threshold, a guided filter with the frame as
guide moves its edge onto the frame's own edges, and a second sharpening makes the object
opaque, the background clear and leaves an anti-aliased edge about one pixel wide.

:class:`MatteSettings` chooses the matte (``refined``, the raw ``soft`` map, or the ``hard``
mask) and what is done to it afterwards, in this order: choke (erode, or expand when negative),
feather (blur the edge), invert. :class:`FrameMatte` makes a frame's mask and alpha once, on
first use, for all the outputs that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from hmhi_cli.errors import InputError
from hmhi_cli.video.compose import as_uint8_mask

MATTE_KINDS = ("refined", "soft", "hard")
MAX_EDGE_PIXELS = 200
"""Largest ``choke`` (either way) and ``feather``, in pixels."""

EDGE_SOFTNESS = 0.1
"""Half-width of the sharpening ramps, in probability: values within 0.1 of the threshold become
the soft edge, those beyond are fully opaque or clear (chosen on davis16-dev, see tests/test_matte.py)."""
GUIDE_RADIUS = 12
"""Guided-filter window radius in pixels at 480 lines (scaled with the frame's shorter side)."""
GUIDE_EPSILON = 1e-4
"""Guided-filter regularisation (guide in 0..1): small, so the matte follows weak edges too."""
REFERENCE_LINES = 480


@dataclass(frozen=True)
class MatteSettings:
    """Which matte the alpha outputs carry, and what is done to it.

    ``kind``: ``refined`` (default, see :func:`refine`), ``soft`` (the model's soft map as it is)
    or ``hard`` (the mask, 0 or 255). ``choke``: pixels to erode the matte by (negative: expand).
    ``feather``: pixels over which the edge is blurred on each side (a Gaussian of standard
    deviation ``feather / 2``). ``invert``: object clear, background opaque.
    """

    kind: str = "refined"
    choke: int = 0
    feather: int = 0
    invert: bool = False

    def __post_init__(self) -> None:
        if self.kind not in MATTE_KINDS:
            raise InputError(f"unknown matte {self.kind!r}; choose from {', '.join(MATTE_KINDS)}")
        if not -MAX_EDGE_PIXELS <= self.choke <= MAX_EDGE_PIXELS:
            raise InputError(f"--choke must be from -{MAX_EDGE_PIXELS} to {MAX_EDGE_PIXELS} pixels, got {self.choke}")
        if not 0 <= self.feather <= MAX_EDGE_PIXELS:
            raise InputError(f"--feather must be from 0 to {MAX_EDGE_PIXELS} pixels, got {self.feather}")


def coarse_size(height: int, width: int, subsample: int) -> tuple[int, int]:
    """(width, height) of the grid ``subsample`` times coarser than a frame, as OpenCV takes sizes."""
    return max(1, round(width / subsample)), max(1, round(height / subsample))


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, epsilon: float, subsample: int = 1,
                  guide_sampling: int = cv2.INTER_AREA) -> np.ndarray:
    """Edge-preserving smoothing of ``source`` that follows the edges of ``guide`` (HxWx3 uint8
    RGB): a colour guided filter with windows of ``2 radius + 1`` pixels and regularisation
    ``epsilon`` (guide scaled to 0..1). Returns HxW float32 at the guide's size.

    Each window fits ``source`` as a linear function of the guide's colours; the output is each
    pixel's colour put through the fits averaged over the windows that cover it. With
    ``subsample`` s > 1 the fits are made on a grid s times coarser (:func:`coarse_size`; the
    guide is resampled there with ``guide_sampling``) and applied to the full-resolution frame:
    the fast guided filter, whose edges stay as sharp at a fraction of the cost. ``source`` is an
    HxW float32 at the guide's size, or already on the coarse grid. ``subsample=1`` gives what
    OpenCV contrib's ``cv2.ximgproc.guidedFilter`` gives.
    """
    height, width = guide.shape[:2]
    coarse = coarse_size(height, width, subsample)
    low_radius = max(1, round(radius / subsample))
    colours = guide if coarse == (width, height) else cv2.resize(guide, coarse, interpolation=guide_sampling)
    target = source if source.shape[::-1] == coarse else cv2.resize(source, coarse, interpolation=cv2.INTER_AREA)
    colours = colours.astype(np.float32) * (1 / 255)

    def mean(image: np.ndarray) -> np.ndarray:
        return cv2.blur(image, (2 * low_radius + 1, 2 * low_radius + 1), borderType=cv2.BORDER_REFLECT)

    red, green, blue = cv2.split(colours)
    mean_r, mean_g, mean_b = cv2.split(mean(colours))
    mean_p = mean(target)
    cov_r, cov_g, cov_b = cv2.split(mean(colours * target[..., None]))
    cov_r -= mean_r * mean_p
    cov_g -= mean_g * mean_p
    cov_b -= mean_b * mean_p
    products = mean(np.dstack([red * red, red * green, red * blue, green * green, green * blue, blue * blue]))
    rr = products[..., 0] - mean_r * mean_r + epsilon
    rg = products[..., 1] - mean_r * mean_g
    rb = products[..., 2] - mean_r * mean_b
    gg = products[..., 3] - mean_g * mean_g + epsilon
    gb = products[..., 4] - mean_g * mean_b
    bb = products[..., 5] - mean_b * mean_b + epsilon
    # The colour covariance (symmetric 3 x 3) inverted by its cofactors, pixel by pixel.
    inv_rr, inv_rg, inv_rb = gg * bb - gb * gb, gb * rb - rg * bb, rg * gb - gg * rb
    inv_gg, inv_gb, inv_bb = rr * bb - rb * rb, rg * rb - rr * gb, rr * gg - rg * rg
    determinant = rr * inv_rr + rg * inv_rg + rb * inv_rb
    slope_r = (inv_rr * cov_r + inv_rg * cov_g + inv_rb * cov_b) / determinant
    slope_g = (inv_rg * cov_r + inv_gg * cov_g + inv_gb * cov_b) / determinant
    slope_b = (inv_rb * cov_r + inv_gb * cov_g + inv_bb * cov_b) / determinant
    offset = mean_p - slope_r * mean_r - slope_g * mean_g - slope_b * mean_b
    full = [cv2.resize(mean(plane), (width, height), interpolation=cv2.INTER_LINEAR)
            for plane in (slope_r, slope_g, slope_b, offset)]
    output = full[3]
    for slope, channel in zip(full[:3], cv2.split(guide)):
        output += cv2.multiply(slope, channel, dtype=cv2.CV_32F, scale=1 / 255)
    return output


def guide_geometry(height: int, width: int) -> tuple[int, int]:
    """Guided-filter radius and subsampling for a frame: :data:`GUIDE_RADIUS` at 480 lines, scaled
    with the shorter side, fitted on a grid half as fine as the radius."""
    radius = max(1, round(GUIDE_RADIUS * min(height, width) / REFERENCE_LINES))
    return radius, max(1, radius // 2)


def refine(probability: np.ndarray, rgb: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The refined matte of a frame: HxW uint8, 255 = object.

    ``probability`` is the soft map (HxW float in 0..1, at the frame's size, or at another such as
    the model's, then resized to the frame), ``rgb`` the frame (HxWx3 uint8). The soft map is sharpened around ``threshold``
    (values within :data:`EDGE_SOFTNESS` of it spread over 0..1, the rest clipped), guided-filtered
    with the frame as guide and sharpened again around 0.5. Pixels above 127 are the refined mask,
    whose edge is the soft map's ``threshold`` contour moved onto the frame's edges.
    """
    height, width = rgb.shape[:2]
    soft = np.asarray(probability, dtype=np.float32)
    if soft.shape != (height, width):
        soft = cv2.resize(soft, (width, height), interpolation=cv2.INTER_LINEAR)
    sharpened = (soft - threshold) * (1 / (2 * EDGE_SOFTNESS)) + 0.5
    np.clip(sharpened, 0.0, 1.0, out=sharpened)
    radius, subsample = guide_geometry(height, width)
    filtered = guided_filter(rgb, sharpened, radius, GUIDE_EPSILON, subsample)
    low, high = 0.5 - EDGE_SOFTNESS, 0.5 + EDGE_SOFTNESS
    np.clip(filtered, low, high, out=filtered)
    return cv2.convertScaleAbs(filtered, alpha=255 / (high - low), beta=-255 * low / (high - low))


def binary_mask(matte: np.ndarray) -> np.ndarray:
    """HxW uint8 matte -> mask: 255 where above 127, else 0 (what ``hmhi eval`` scores)."""
    return cv2.threshold(matte, 127, 255, cv2.THRESH_BINARY)[1]


def disc(radius: int) -> np.ndarray:
    """Structuring element: a disc ``2 radius + 1`` pixels across."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def finish(matte: np.ndarray, settings: MatteSettings) -> np.ndarray:
    """Choke, feather and invert an HxW uint8 matte as ``settings`` say (``matte`` itself when they say nothing)."""
    if settings.choke > 0:
        matte = cv2.erode(matte, disc(settings.choke))
    elif settings.choke < 0:
        matte = cv2.dilate(matte, disc(-settings.choke))
    if settings.feather:
        matte = cv2.GaussianBlur(matte, (0, 0), settings.feather / 2, borderType=cv2.BORDER_REPLICATE)
    if settings.invert:
        matte = 255 - matte
    return matte


FOREGROUND_RADII = (45, 3)
"""Box radii (pixels at 480 lines, scaled with the frame) of the two passes of :func:`foreground_colour`."""


def _fuse(image: np.ndarray, foreground: np.ndarray, background: np.ndarray, alpha: np.ndarray,
          radius: int) -> tuple[np.ndarray, np.ndarray]:
    """One pass of blur fusion: local means of the foreground and background colours, weighted by
    alpha and by 1 - alpha, and the foreground colour that with them composes to ``image``."""
    size = (2 * radius + 1, 2 * radius + 1)
    weight = cv2.blur(alpha, size)[..., None]
    mean_foreground = cv2.blur(foreground * alpha[..., None], size) / (weight + 1e-5)
    mean_background = cv2.blur(background * (1 - alpha[..., None]), size) / (1 - weight + 1e-5)
    a = alpha[..., None]
    estimate = mean_foreground + a * (image - a * mean_foreground - (1 - a) * mean_background)
    return np.clip(estimate, 0, 1), mean_background


def foreground_colour(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The object's own colour (HxWx3 uint8) under a matte (HxW uint8): where alpha is partial the
    frame mixes object and background, and the background's share is taken out (blur fusion: local
    colour means on both sides of the edge, two passes, wide then narrow). Opaque pixels keep the
    frame's colour; clear ones are black."""
    scale = min(rgb.shape[:2]) / REFERENCE_LINES
    image = rgb.astype(np.float32) * (1 / 255)
    weight = alpha.astype(np.float32) * (1 / 255)
    foreground = background = image
    for radius in FOREGROUND_RADII:
        foreground, background = _fuse(image, foreground, background, weight, max(1, round(radius * scale)))
    colour = np.rint(foreground * 255).astype(np.uint8)
    colour[alpha == 255] = rgb[alpha == 255]
    colour[alpha == 0] = 0
    return colour


class FrameMatte:
    """One frame's refined map, mask and alpha, each made on first use and kept.

    ``mask`` (masks, mask video, overlay) is the refined mask; ``alpha`` (the alpha outputs, the
    composite) is the matte ``settings`` choose, choked, feathered and inverted; ``soft`` is the
    raw soft map as uint8 (probs); ``foreground`` the object's colour under ``alpha``
    (:func:`foreground_colour`).
    """

    def __init__(self, probability: np.ndarray, rgb: np.ndarray, settings: MatteSettings, threshold: float) -> None:
        self.probability = probability
        self.rgb = rgb
        self.settings = settings
        self.threshold = threshold

    @cached_property
    def soft(self) -> np.ndarray:
        return as_uint8_mask(self.probability)

    @cached_property
    def refined(self) -> np.ndarray:
        return refine(self.probability, self.rgb, self.threshold)

    @cached_property
    def mask(self) -> np.ndarray:
        return binary_mask(self.refined)

    @cached_property
    def alpha(self) -> np.ndarray:
        base = {"refined": lambda: self.refined, "soft": lambda: self.soft, "hard": lambda: self.mask}
        return finish(base[self.settings.kind](), self.settings)

    @cached_property
    def foreground(self) -> np.ndarray:
        return foreground_colour(self.rgb, self.alpha)
