"""Dataset layout detection and reading, on small fake trees and on the shared DAVIS-16 sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmhi_cli.data.layouts import Sequence, detect_layout, list_images, load_dataset, natural_sort_key
from hmhi_cli.errors import InputError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DAVIS_DEV = SHARED / "davis16-dev"


def touch(root: Path, *relative: str) -> None:
    for name in relative:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def names(paths: list[Path]) -> list[str]:
    return [path.name for path in paths]


def test_natural_sort_orders_numbers_by_value() -> None:
    unsorted = ["img10.png", "img2.png", "IMG1.png", "00010.jpg", "00002.jpg", "frame_9", "frame_10"]
    assert sorted(unsorted, key=natural_sort_key) == [
        "00002.jpg",
        "00010.jpg",
        "frame_9",
        "frame_10",
        "IMG1.png",
        "img2.png",
        "img10.png",
    ]
    assert natural_sort_key(Path("a/img2.png")) < natural_sort_key("a/img10.png")
    assert sorted(["good2.mp4", "good.mp4", "good10.mov"], key=natural_sort_key) == ["good.mp4", "good2.mp4", "good10.mov"]
    assert natural_sort_key("clips/b.mp4") < natural_sort_key("clips-x/a.mp4"), "a path is compared a folder at a time"


def test_list_images_filters_and_sorts(tmp_path: Path) -> None:
    touch(tmp_path, "img10.JPG", "img2.png", "img1.jpeg", "notes.txt", ".img3.part.png", "flow.flo")
    (tmp_path / "img4.png").mkdir()
    assert names(list_images(tmp_path)) == ["img1.jpeg", "img2.png", "img10.JPG"]


def test_list_images_errors_name_the_folder(tmp_path: Path) -> None:
    touch(tmp_path, "empty/readme.txt")
    with pytest.raises(InputError, match="no .jpg/.jpeg/.png images in .*empty"):
        list_images(tmp_path / "empty")
    with pytest.raises(InputError, match="not a folder: .*absent"):
        list_images(tmp_path / "absent")


def make_davis(root: Path, with_list: bool = True) -> None:
    for seq, count in (("bear", 3), ("cows", 12), ("dog", 2)):
        for index in range(count):
            touch(root, f"JPEGImages/480p/{seq}/{index:05d}.jpg", f"Annotations/480p/{seq}/{index:05d}.png")
    touch(root, "FlowImages/480p/cows/00000.jpg", "FlowImages/480p/cows/00011.jpg", "Flow/480p/bear/00000.flo")
    if with_list:
        (root / "ImageSets/2016").mkdir(parents=True)
        (root / "ImageSets/2016/val.txt").write_text("dog\ncows\n")


def test_davis_layout(tmp_path: Path) -> None:
    make_davis(tmp_path)
    assert detect_layout(tmp_path) == "davis"
    dog, cows = load_dataset(tmp_path)
    assert (dog.name, cows.name) == ("dog", "cows")  # the order of val.txt
    assert names(cows.frames)[:3] == ["00000.jpg", "00001.jpg", "00002.jpg"]
    assert names(cows.frames)[-1] == "00011.jpg"
    assert cows.annotations["00010"] == tmp_path / "Annotations/480p/cows/00010.png"
    assert cows.flows == {
        "00000": tmp_path / "FlowImages/480p/cows/00000.jpg",
        "00011": tmp_path / "FlowImages/480p/cows/00011.jpg",
    }
    assert dog.flows == {}
    bear = load_dataset(tmp_path, sequences=["bear"])[0]  # not in val.txt, still readable by name
    assert len(bear.frames) == 3 and bear.flows == {}  # Flow/ holds only .flo files


def test_davis_without_sequence_list_uses_every_folder(tmp_path: Path) -> None:
    make_davis(tmp_path, with_list=False)
    assert [sequence.name for sequence in load_dataset(tmp_path)] == ["bear", "cows", "dog"]


def test_davis_errors(tmp_path: Path) -> None:
    make_davis(tmp_path)
    with pytest.raises(InputError, match=r"sequences not found in .* \(davis layout\): elephant, zebra"):
        load_dataset(tmp_path, sequences=["dog", "elephant", "zebra"])
    with pytest.raises(InputError, match=r"JPEGImages/1080p \(resolutions found: 480p\)"):
        load_dataset(tmp_path, resolution="1080p")
    touch(tmp_path, "Annotations/480p/dog/00007.png")
    with pytest.raises(InputError, match="00007.png has no frame named 00007"):
        load_dataset(tmp_path, sequences=["dog"])


@pytest.mark.parametrize("frame_dir, flow_dir, mask_dir", [("frame", "flow", "mask"), ("Frame", "Flow", "GT")])
def test_reference_layout_per_sequence(tmp_path: Path, frame_dir: str, flow_dir: str, mask_dir: str) -> None:
    for seq in ("seq2", "seq10"):
        touch(tmp_path, *(f"{seq}/{frame_dir}/{i}.jpg" for i in (1, 2, 10)))
        touch(tmp_path, f"{seq}/{flow_dir}/1.png", f"{seq}/{flow_dir}/2.jpg", f"{seq}/{mask_dir}/10.png")
    touch(tmp_path, "notes/readme.txt")
    assert detect_layout(tmp_path) == "reference"
    sequences = load_dataset(tmp_path)
    assert [sequence.name for sequence in sequences] == ["seq2", "seq10"]
    seq2 = sequences[0]
    assert names(seq2.frames) == ["1.jpg", "2.jpg", "10.jpg"]
    assert seq2.annotations == {"10": tmp_path / f"seq2/{mask_dir}/10.png"}
    assert set(seq2.flows) == {"1", "2"}


def test_reference_layout_per_kind(tmp_path: Path) -> None:
    touch(tmp_path, "frame/a/0.jpg", "frame/a/1.jpg", "frame/b/0.jpg", "mask/a/1.png", "flow/b/0.png")
    touch(tmp_path, "a/flow/1.jpg")  # where `hmhi flow precompute` writes for non-DAVIS trees
    assert detect_layout(tmp_path) == "reference"
    a, b = load_dataset(tmp_path)
    assert a.annotations == {"1": tmp_path / "mask/a/1.png"} and b.annotations == {}
    assert b.flows == {"0": tmp_path / "flow/b/0.png"}
    assert a.flows == {"1": tmp_path / "a/flow/1.jpg"}


def test_flat_jpegimages_annotations_is_reference(tmp_path: Path) -> None:
    touch(tmp_path, "JPEGImages/cars1/00001.jpg", "JPEGImages/cars1/00002.jpg", "Annotations/cars1/00002.png")
    assert detect_layout(tmp_path) == "reference"
    (cars1,) = load_dataset(tmp_path)
    assert list(cars1.annotations) == ["00002"]


def test_fbms_layout_matches_masks_by_frame_number(tmp_path: Path) -> None:
    touch(tmp_path, *(f"Testset/cars1/cars1_{i:02d}.jpg" for i in range(1, 13)))
    touch(tmp_path, "Testset/cars1/GroundTruth/001_gt.png", "Testset/cars1/GroundTruth/011_gt.png")
    touch(tmp_path, "Testset/cars1/GroundTruth/cars1Def.dat", "Testset/cars1/cars1.bmf")
    touch(tmp_path, *(f"Testset/tennis/tennis{i:03d}.jpg" for i in range(0, 5)))
    touch(tmp_path, "Testset/tennis/GroundTruth/tennis_004_gt.png")
    touch(tmp_path, "Trainingset/bear01/bear01_0001.jpg")
    assert detect_layout(tmp_path) == "fbms"
    cars1, tennis = load_dataset(tmp_path)  # Testset, not Trainingset
    assert cars1.annotations == {
        "cars1_01": tmp_path / "Testset/cars1/GroundTruth/001_gt.png",
        "cars1_11": tmp_path / "Testset/cars1/GroundTruth/011_gt.png",
    }
    assert tennis.annotations == {"tennis004": tmp_path / "Testset/tennis/GroundTruth/tennis_004_gt.png"}
    assert detect_layout(tmp_path / "Testset") == "fbms"  # a split folder as root
    assert [s.name for s in load_dataset(tmp_path / "Testset")] == ["cars1", "tennis"]
    touch(tmp_path, "Testset/cars1/GroundTruth/040_gt.png")
    with pytest.raises(InputError, match="040_gt.png has no frame numbered 40"):
        load_dataset(tmp_path, sequences=["cars1"])


def test_ytobj_layout_kind_first(tmp_path: Path) -> None:
    for clip in ("0001", "0002"):
        touch(tmp_path, *(f"JPEGImages/aeroplane/{clip}/{i:05d}.jpg" for i in range(4)))
    touch(tmp_path, "JPEGImages/cat/0001/00000.jpg", "Annotations/aeroplane/0002/00003.png")
    assert detect_layout(tmp_path) == "ytobj"
    sequences = load_dataset(tmp_path)
    assert [s.name for s in sequences] == ["aeroplane/0001", "aeroplane/0002", "cat/0001"]
    assert sequences[1].annotations == {"00003": tmp_path / "Annotations/aeroplane/0002/00003.png"}
    assert sequences[0].annotations == {}
    assert load_dataset(tmp_path, sequences=["cat/0001"])[0].frames == [tmp_path / "JPEGImages/cat/0001/00000.jpg"]


def test_ytobj_layout_sequence_first(tmp_path: Path) -> None:
    touch(tmp_path, "horse/0003/frames/00001.jpg", "horse/0003/frames/00002.jpg", "horse/0003/gt/00002.png")
    assert detect_layout(tmp_path) == "ytobj"
    (horse,) = load_dataset(tmp_path)
    assert horse.name == "horse/0003" and list(horse.annotations) == ["00002"]


def test_unknown_layout_says_what_was_looked_for(tmp_path: Path) -> None:
    touch(tmp_path, "videos/clip.mp4")
    with pytest.raises(InputError) as caught:
        detect_layout(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    for expected in ("JPEGImages/480p/<seq>/", "Testset/<seq>/GroundTruth/", "<seq>/frame/", "<class>/<seq>/frames/"):
        assert expected in message
    with pytest.raises(InputError, match="dataset folder not found: .*missing"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(InputError, match="unknown dataset layout 'kitti'"):
        load_dataset(tmp_path, layout="kitti")


@pytest.mark.skipif(not DAVIS_DEV.is_dir(), reason=f"shared DAVIS-16 sample not found at {DAVIS_DEV}")
def test_shared_davis_sample() -> None:
    assert detect_layout(DAVIS_DEV) == "davis"
    sequences = load_dataset(DAVIS_DEV)
    listed = (DAVIS_DEV / "ImageSets/2016/val.txt").read_text().split()
    assert [sequence.name for sequence in sequences] == listed
    blackswan = next(sequence for sequence in sequences if sequence.name == "blackswan")
    assert isinstance(blackswan, Sequence)
    assert len(blackswan.frames) == 50 and set(blackswan.annotations) == {frame.stem for frame in blackswan.frames}
    assert blackswan.frames[0].name == "00000.jpg" and blackswan.frames[-1].name == "00049.jpg"
