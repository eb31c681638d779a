"""The photo avatar's triangle mesh: MediaPipe's face tessellation, closed over the eyes and mouth, and extended
with rings out to hair, neck and background.

Vertices, in this order (V = 468 + 14 + RINGS * 36):

    [0, 468)          the face landmarks (MediaPipe's canonical face mesh topology)
    [468, 482)        one middle row per eye (7 + 7 points halfway between the lids): the eyeball's vertices,
                      so that the irises can move inside the eye opening and the opening can close
    [482, ...)        RINGS rings of 36 points around the face oval (hair, ears, neck, background)

Triangles: the tessellation's 852, ladders that fill each eye (upper lid - middle row - lower lid) and the mouth
(upper inner lip - lower inner lip: a gap that opens when the lips part and is drawn over by the mouth interior),
and quads between consecutive rings. `follow` (V,) says how much each vertex moves with the head: 1 on the face,
falling to 0 on the outermost ring, which stays in place and so joins the still background without a seam.

The contour index lists below are facts of MediaPipe's topology; tests/renderer/test_photo.py checks each against
`FaceLandmarksConnections`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

# Lip contours from the subject's right mouth corner (image left) to the left one.
LIPS_OUTER_UPPER: tuple[int, ...] = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER: tuple[int, ...] = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_INNER_UPPER: tuple[int, ...] = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER: tuple[int, ...] = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
# Eye contours, outer corner to inner corner; the columns of upper and lower lids face each other.
EYE_UPPER: dict[str, tuple[int, ...]] = {
    "Right": (33, 246, 161, 160, 159, 158, 157, 173, 133),
    "Left": (263, 466, 388, 387, 386, 385, 384, 398, 362),
}
EYE_LOWER: dict[str, tuple[int, ...]] = {
    "Right": (33, 7, 163, 144, 145, 153, 154, 155, 133),
    "Left": (263, 249, 390, 373, 374, 380, 381, 382, 362),
}
# Brows, outer end to inner end: the upper and the lower edge.
BROW_UPPER: dict[str, tuple[int, ...]] = {"Right": (70, 63, 105, 66, 107), "Left": (300, 293, 334, 296, 336)}
BROW_LOWER: dict[str, tuple[int, ...]] = {"Right": (46, 53, 52, 65, 55), "Left": (276, 283, 282, 295, 285)}
IRIS_CENTRE = {"Right": 468, "Left": 473}
IRIS_RING: dict[str, tuple[int, ...]] = {"Right": (469, 470, 471, 472), "Left": (474, 475, 476, 477)}
NOSE_TIP, NOSE_BOTTOM, CHIN, FOREHEAD = 1, 2, 152, 10
NOSE_WING = {"Right": 98, "Left": 327}
CHEEK = {"Right": 205, "Left": 425}  # the cheek's centre, below the cheekbone
CHEEKBONE = {"Right": 117, "Left": 346}
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
SIDES = ("Left", "Right")

NUM_LANDMARKS = 478  # what FaceLandmarker returns (468 mesh points + 10 iris points)
NUM_FACE = 468  # the tessellated ones
EYE_ROW = {"Right": NUM_FACE, "Left": NUM_FACE + 7}  # first middle-row vertex of each eye
NUM_INNER = NUM_FACE + 14
RING_SCALES = (1.25, 1.6, 2.05, 2.6)  # ring radius / face oval radius, from the face centre
RING_FOLLOW = (0.85, 0.5, 0.18, 0.0)  # how much each ring moves with the head
RING_FOLLOW_BELOW = (0.6, 0.25, 0.06, 0.0)  # below the chin (neck and shoulders move less)


@dataclass(frozen=True)
class Mesh:
    """`vertices` (V, 3) float32 in photo px (x right, y down, z towards the camera), `triangles` (T, 3) int32,
    `follow` (V,) float32 in [0, 1]: how much each vertex moves with the head pose."""

    vertices: NDArray[np.float32]
    triangles: NDArray[np.int32]
    follow: NDArray[np.float32]


def tessellation() -> NDArray[np.int32]:
    """MediaPipe's face tessellation as (852, 3) triangles (its edge list read as consecutive triples)."""
    from mediapipe.tasks.python.vision import FaceLandmarksConnections

    edges = np.array([(c.start, c.end) for c in FaceLandmarksConnections.FACE_LANDMARKS_TESSELATION], np.int32)
    return edges[:, 0].reshape(-1, 3)


def ladder(top: list[int], bottom: list[int]) -> list[tuple[int, int, int]]:
    """Triangles filling the strip between two rows of vertices of equal length, without degenerate ones
    (rows that share end points, such as the two lids at the eye corners)."""
    out = []
    for c in range(len(top) - 1):
        for tri in ((top[c], top[c + 1], bottom[c]), (top[c + 1], bottom[c + 1], bottom[c])):
            if len(set(tri)) == 3:
                out.append(tri)
    return out


def eye_middle_row(side: str) -> list[int]:
    """The middle row of one eye, corner to corner: corners, then the 7 middle-row vertices between."""
    upper = EYE_UPPER[side]
    return [upper[0], *range(EYE_ROW[side], EYE_ROW[side] + 7), upper[-1]]


def _ring_points(landmarks: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """(RINGS * 36, 3) ring vertices and their (RINGS * 36,) follow weights.

    Each ring is the face oval scaled about the face centre; a ring point keeps its oval point's depth (so a head
    turn moves the hair beside the face as the face's edge moves, without a seam).
    """
    oval = landmarks[list(FACE_OVAL)]
    centre = oval[:, :2].mean(axis=0)
    # 1 straight below the face centre, 0 at and above its sides: the neck follows the head less
    below = np.clip((oval[:, 1] - centre[1]) / np.ptp(oval[:, 1]) * 2.0, 0.0, 1.0) ** 2
    points, follow = [], []
    for scale, up, down in zip(RING_SCALES, RING_FOLLOW, RING_FOLLOW_BELOW, strict=True):
        ring = oval.copy()
        ring[:, :2] = centre + scale * (oval[:, :2] - centre)
        points.append(ring)
        follow.append(up + (down - up) * below)
    return np.concatenate(points).astype(np.float32), np.concatenate(follow).astype(np.float32)


def build_mesh(landmarks: NDArray[np.float32]) -> Mesh:
    """The whole mesh for one portrait from its (478, 3) landmarks (px)."""
    middle = []
    for side in ("Right", "Left"):  # the order of EYE_ROW
        upper, lower = landmarks[list(EYE_UPPER[side][1:-1])], landmarks[list(EYE_LOWER[side][1:-1])]
        middle.append((upper + lower) / 2)
    rings, ring_follow = _ring_points(landmarks)
    vertices = np.concatenate([landmarks[:NUM_FACE], *middle, rings]).astype(np.float32)
    triangles = [tuple(t) for t in tessellation().tolist()]
    for side in SIDES:
        row = eye_middle_row(side)
        triangles += ladder(list(EYE_UPPER[side]), row) + ladder(row, list(EYE_LOWER[side]))
    triangles += ladder(list(LIPS_INNER_UPPER), list(LIPS_INNER_LOWER))
    n = len(FACE_OVAL)
    rows = [list(FACE_OVAL)] + [
        list(range(NUM_INNER + r * n, NUM_INNER + (r + 1) * n)) for r in range(len(RING_SCALES))
    ]
    for inner, outer in itertools.pairwise(rows):
        triangles += ladder(inner + inner[:1], outer + outer[:1])  # closed loops
    follow = np.concatenate([np.ones(NUM_INNER, np.float32), ring_follow])
    return Mesh(vertices, np.array(triangles, np.int32), follow)
