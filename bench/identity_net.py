"""dlib's face descriptor in torch (pipeline/faces/descriptor.py) against dlib itself, on real chips.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/identity_net.py [--chips 50] [--repeats 3]

Chips: frames spread over the two anonymous clips (half from each), the largest face found by the
project's FaceAnalyzer (HOG + dlib's 68 points), cut by `dlib.get_face_chip` (150 px, padding 0.25, as
`compute_face_descriptor` cuts them). Both networks see the same uint8 chips.

Bars: every descriptor within 1e-3 (max abs over its 128 values) of dlib's; the pair distances rank the
same (Spearman's rho over all pairs, and the discordant pairs among all pairs of pairs). Also: the largest
|distance difference|, same-person verdicts (distance < 0.6) that differ, whether float64 is needed, and
the speed of one batch through each (median wall time of `--repeats`, torch with torch.get_num_threads()
threads, dlib as built). Chips: `extract_chips(chip_transforms(landmarks))` against `dlib.get_face_chip`,
pixel differences and the descriptor difference they cause, beside plain bilinear grid_sample (no
pyramid, no truncation) for scale. The script measures; it exits 0 whether or not the bars are met.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dlib
import numpy as np
import torch
import torch.nn.functional as F
from common import print_table
from scipy.stats import spearmanr

from pipeline.faces.descriptor import chip_transforms, extract_chips, load_face_descriptor
from pipeline.faces.detect import SAME_PERSON, FaceAnalyzer
from pipeline.media.decode import MoviePlate
from pipeline.models import model_path

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"
CLIPS = ("woman_headturns_512.mp4", "man_glasses_720x1280.mp4")
BAR = 1e-3  # max abs difference of a descriptor from dlib's
EVERY = 5  # frames looked at for faces: every EVERY-th


def dlib_shape(face) -> dlib.full_object_detection:
    rect = dlib.rectangle(*[int(round(v)) for v in face.box])
    points = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in face.landmarks])
    return dlib.full_object_detection(rect, points)


def gather_faces(n: int) -> list[tuple[str, int, np.ndarray, dlib.full_object_detection]]:
    """(clip, frame number, frame, dlib shape) for n faces, spread evenly over the frames with a face."""
    analyzer, out = FaceAnalyzer(), []
    for k, clip in enumerate(CLIPS):
        want = n // len(CLIPS) + (k < n % len(CLIPS))
        plate = MoviePlate(FOOTAGE / clip)
        found = []
        for i, frame in enumerate(plate.read(0, plate.info.frame_count)):
            if i % EVERY == 0 and (faces := analyzer.detect(frame)):
                found.append((clip, i, frame, dlib_shape(faces[0])))
        if len(found) < want:
            sys.exit(f"bench/identity_net.py: {clip}: faces on {len(found)} frames, {want} wanted")
        out += [found[j] for j in np.linspace(0, len(found) - 1, want).round().astype(int)]
    return out


def interleaved_medians(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each run, the runs taking turns so that a change of load on the machine falls
    on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(t) for name, t in times.items()}


def pair_distances(d: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(len(d), 1)
    return np.linalg.norm(d[i] - d[j], axis=1)


def discordant(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Pairs of pairs ordered one way by a and the other by b, and how many pairs of pairs there are."""
    i, j = np.triu_indices(len(a), 1)
    sa, sb = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    return int((sa * sb < 0).sum()), len(i)


def plain_bilinear(images: torch.Tensor, transforms: np.ndarray, size: int = 150) -> torch.Tensor:
    """The chip by grid_sample alone (no pyramid, no truncation): what a simpler cut would give."""
    inverse = np.linalg.inv(np.concatenate([transforms, np.tile([[[0, 0, 1]]], (len(transforms), 1, 1))], 1))
    h, w = images.shape[-2:]
    u, v = np.meshgrid(np.arange(size), np.arange(size))
    pts = np.einsum("hwk,bjk->bhwj", np.stack([u, v, np.ones_like(u)], -1), inverse[:, :2])
    grid = torch.from_numpy(pts / [w - 1, h - 1] * 2 - 1).float()
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def pyramid_depth(detail: dlib.chip_details) -> int:
    side, depth, size = detail.rect.width(), 0, detail.rows * detail.cols
    side = (side - 1) / 2 + 1
    while side * side > size:
        side, depth = (side - 1) / 2 + 1, depth + 1
    return depth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not FOOTAGE.is_dir():
        sys.exit(f"bench/identity_net.py: footage not found at {FOOTAGE}")

    t0 = time.perf_counter()
    faces = gather_faces(args.chips)
    chips = [dlib.get_face_chip(frame, shape, size=150, padding=0.25) for _, _, frame, shape in faces]
    print(f"{len(chips)} chips from {', '.join(CLIPS)} in {time.perf_counter() - t0:.0f} s")

    recogniser = dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition")))
    net = load_face_descriptor()
    net64 = copy.deepcopy(net).double()
    batch = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float().contiguous()

    ref = np.array([np.array(d) for d in recogniser.compute_face_descriptor(chips)])
    with torch.no_grad():
        ours = net(batch).numpy().astype(np.float64)
        ours64 = net64(batch.double()).numpy()
    per_chip = np.abs(ours - ref).max(1)
    per_chip64 = np.abs(ours64 - ref).max(1)
    dist_ref, dist_ours = pair_distances(ref), pair_distances(ours)
    rho = spearmanr(dist_ref, dist_ours).statistic
    bad, all_pairs = discordant(dist_ref, dist_ours)
    verdicts = int(((dist_ref < SAME_PERSON) != (dist_ours < SAME_PERSON)).sum())

    # speed: one batch of all chips each way, alternating
    def torch_batch():
        with torch.no_grad():
            net(batch)

    def torch_grad():
        x = batch.clone().requires_grad_(True)
        net(x).sum().backward()

    def dlib_batch():
        recogniser.compute_face_descriptor(chips)

    torch_batch(), dlib_batch()  # warm up
    speed = interleaved_medians({"dlib": dlib_batch, "torch": torch_batch, "grad": torch_grad}, args.repeats)
    t_dlib, t_torch, t_grad = speed["dlib"], speed["torch"], speed["grad"]

    print("\nDescriptors: torch (float32) against dlib's compute_face_descriptor on the same chips")
    print_table(
        ["figure", "value"],
        [
            ("chips", str(len(chips))),
            ("max abs difference, worst descriptor", f"{per_chip.max():.2e}"),
            ("max abs difference, median descriptor", f"{np.median(per_chip):.2e}"),
            (f"descriptors within {BAR:g}", f"{int((per_chip <= BAR).sum())} of {len(chips)}"),
            ("float64 net: worst descriptor vs dlib", f"{per_chip64.max():.2e}"),
            ("float32 vs float64 net: worst descriptor", f"{np.abs(ours - ours64).max():.2e}"),
            ("descriptor norm (dlib), min-max", f"{np.linalg.norm(ref, axis=1).min():.3f}-"
             f"{np.linalg.norm(ref, axis=1).max():.3f}"),
            ("pairs", str(len(dist_ref))),
            ("pair distances (dlib), min-max", f"{dist_ref.min():.3f}-{dist_ref.max():.3f}"),
            ("max |distance difference|", f"{np.abs(dist_ref - dist_ours).max():.2e}"),
            ("Spearman rho of pair distances", f"{rho:.9f}"),
            ("discordant pairs of pairs", f"{bad} of {all_pairs}"),
            (f"same-person verdicts (< {SAME_PERSON}) that differ", f"{verdicts} of {len(dist_ref)}"),
            (f"bar: all within {BAR:g} and same ranking",
             "met" if per_chip.max() <= BAR and bad == 0 else "NOT met"),
        ],
    )  # fmt: skip

    print(f"\nSpeed: one batch of {len(chips)} chips, median of {args.repeats} (torch threads: "
          f"{torch.get_num_threads()})")  # fmt: skip
    print_table(
        ["run", "seconds", "ms a chip", "vs dlib"],
        [
            (name, f"{t:.3f}", f"{1000 * t / len(chips):.1f}", f"{t / t_dlib:.2f}x")
            for name, t in (
                ("dlib compute_face_descriptor (list of chips)", t_dlib),
                ("torch forward, no grad", t_torch),
                ("torch forward + backward to the chips", t_grad),
            )
        ],
    )

    # chips: ours from the frames against dlib's
    frames = [frame for _, _, frame, _ in faces]
    landmarks = np.array([[(p.x, p.y) for p in shape.parts()] for _, _, _, shape in faces], np.float64)
    transforms = chip_transforms(landmarks)
    details = [dlib.get_face_chip_details(shape, 150, 0.25) for _, _, _, shape in faces]
    depths = [pyramid_depth(d) for d in details]
    cut_ours, cut_plain, t_cut = [], [], 0.0
    for frame, transform in zip(frames, transforms, strict=True):
        image = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
        t = time.perf_counter()
        cut_ours.append(extract_chips(image, transform[None]))
        t_cut += time.perf_counter() - t
        cut_plain.append(plain_bilinear(image, transform[None]))
    t = time.perf_counter()
    for frame, (_, _, _, shape) in zip(frames, faces, strict=True):
        dlib.get_face_chip(frame, shape, size=150, padding=0.25)
    t_dlib_cut = time.perf_counter() - t
    cut_ours, cut_plain = torch.cat(cut_ours), torch.cat(cut_plain)
    with torch.no_grad():
        d_cut = net(cut_ours).numpy().astype(np.float64)
        d_plain = net(cut_plain).numpy().astype(np.float64)
    rows = []
    for name, cut, d in (
        ("extract_chips", cut_ours, d_cut),
        ("plain grid_sample bilinear", cut_plain, d_plain),
    ):
        diff = np.abs(cut.numpy() - batch.numpy())
        rows.append(
            (
                name,
                f"{diff.mean():.4f}",
                f"{diff.max():.1f}",
                f"{100 * (diff > 0).mean():.3f}%",
                f"{np.abs(d - ours).max(1).max():.2e}",
                f"{np.abs(pair_distances(d) - dist_ours).max():.2e}",
            )
        )
    depth_counts = ", ".join(f"{k}: {depths.count(k)}" for k in sorted(set(depths)))
    print(f"\nChips cut from the frames against dlib.get_face_chip ({len(chips)} chips; dlib's pyramid depth "
          f"{depth_counts}; ms a chip: extract_chips {1000 * t_cut / len(chips):.1f}, dlib "
          f"{1000 * t_dlib_cut / len(chips):.1f})")  # fmt: skip
    print_table(
        ["cut", "mean abs px", "max abs px", "values differing", "descriptor max abs", "max |distance diff|"],
        rows,
    )
    mapping = max(np.abs(transforms[i] - dlib_mapping(details[i])).max() for i in range(len(details)))
    print(f"chip_transforms against dlib's get_face_chip_details mapping: max abs {mapping:.1e}")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


def dlib_mapping(detail: dlib.chip_details) -> np.ndarray:
    """dlib's get_mapping_to_chip: the rotated rectangle's corners tl, tr, br to the chip's corners."""
    r = detail.rect
    left, top, right, bottom = r.left(), r.top(), r.right(), r.bottom()
    centre = np.array([(left + right) / 2, (top + bottom) / 2])
    c, s = np.cos(detail.angle), np.sin(detail.angle)
    rotation = np.array([[c, -s], [s, c]])
    corners = np.array([(left, top), (right, top), (right, bottom)]) - centre
    src = corners @ rotation.T + centre
    dst = np.array([(0, 0), (detail.cols - 1, 0), (detail.cols - 1, detail.rows - 1)], np.float64)
    return np.linalg.solve(np.c_[src, np.ones(3)], dst).T


if __name__ == "__main__":
    sys.exit(main())
