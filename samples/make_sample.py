"""Make ``samples/sample.mp4``: a short synthetic clip (procedural textures only) for trying the CLI.

Run from the repository root: ``python samples/make_sample.py``.
"""

from pathlib import Path

import av
import numpy as np

from hmhi_cli.atomic import atomic_path
from hmhi_cli.data.synthetic import SyntheticClipConfig, make_clip

SAMPLE = Path(__file__).resolve().parent / "sample.mp4"
SEED = 2
FPS = 24

CONFIG = SyntheticClipConfig(
    size=(360, 640),
    num_frames=48,
    num_distractors=(2, 2),
    object_scale=(0.22, 0.26),
    object_speed=(0.006, 0.009),
    background_speed=(0.002, 0.004),
    camera_tracking_probability=0.0,
    object_rotation=0.8,
    object_scale_change=0.004,
    background_zoom=0.001,
    background_rotation=0.05,
    texture_kinds={"noise": 0.5, "stripes": 0.15, "checkers": 0.1, "gradient": 0.25},
    blur_probability=0.0,
    noise_std=(1.0, 1.0),
)


def main() -> None:
    clip = make_clip(CONFIG, np.random.default_rng(SEED))
    height, width = CONFIG.size
    with atomic_path(SAMPLE) as temporary:
        with av.open(str(temporary), "w") as container:
            stream = container.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": "23", "preset": "slow"}
            for image in clip.frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())
    print(f"wrote {SAMPLE} ({SAMPLE.stat().st_size / 1e6:.2f} MB, {len(clip.frames)} frames)")


if __name__ == "__main__":
    main()
