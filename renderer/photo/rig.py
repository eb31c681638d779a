"""From one 58-float face to the photo avatar's mesh: blendshapes (relative to the portrait's own expression),
the eyes' gaze, and the head pose.

    rig = Rig(mesh, landmarks, scores)       # mesh and landmarks in output px; scores: the portrait's own (52,)
                                             # (lid_reach, glasses: renderer.photo.fields.lid_reach and
                                             # glasses_top of the photo)
    vertices = rig.vertices(face)            # (V, 3) output px after expression and pose

The portrait's own expression is the rest pose: a blendshape moves the mesh by (input - the portrait's score)
times its field, so a frame at the portrait's own scores is the photo itself and the neutral face (all zeros)
takes the photo's own smile, squint, ... out: the numbers mean what the engine's tracker means by them, which
is what the closed loop checks (tests/renderer/test_photo_loop.py). Scores up to RESTING are the portrait's
resting face (the tracker reads a few hundredths of gaze, squint or press on any still face): the neutral face
keeps them, and an input below the portrait's own score there changes nothing. Lids and lips never cross:
closing amounts beyond a closed eye or mouth are scaled back (`limit`).

The choice costs identity where a portrait smiles. Keeping a fraction k of the portrait's expression in the
neutral face trades the neutral face's likeness to the photo (PSNR of the face region) against how far a smile
input raises the tracked smile over the neutral render (the astronaut, own mouthSmile 0.9, 640x480):

    k            0 (chosen)   0.25          0.5           0.75          1
    PSNR         25.4 dB      25.9 dB       27.3 dB       31.1 dB       60.9 dB
    smile L/R    +0.70/0.65   +0.65/0.64    +0.24/0.24    +0.09/0.11    +0.02/0.02   (input 0.8; needed +0.4)

No k gives both 30 dB and +0.4: a neutral face that keeps enough of the smile to look like the photo already
smiles as far as the tracker reads. The numbers' meaning wins: the model's listener faces drive the avatar, and
a listener who does not smile must not smile because the photo did. (Grace Hopper, who does not smile: 32.9 dB
at 640x480, 32.5 dB at 1280x720; the astronaut with only her smile kept would be 31.6 dB.)

Pose: pitch, yaw and roll rotate the 3-D mesh (orthographic) about a pivot inside the head; the photo's own head
pose is the rest (taking it out, turning Grace Hopper's head up 0.11 rad, would leave the neutral face 13.5 dB
from her photo). Translation moves the mesh (10 cm per unit at the portrait's scale, from its eye distance) and
tz scales it as a camera 50 cm away would.
Each vertex follows the head by its `follow` weight, so the rings blend the head into the still background.
Angles up to SOFT_POSE_RAD are applied as given; larger ones are softened smoothly towards MAX_POSE_RAD (the
photo never saw the side of the head: turning further would only smear it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from renderer.face import BLENDSHAPE_INDEX, BLENDSHAPES, FACE_INDEX, ROTATION, rotation_matrix
from renderer.photo.fields import Geometry, displacement_fields
from renderer.photo.mesh import (
    EYE_LOWER,
    EYE_ROW,
    EYE_UPPER,
    FACE_OVAL,
    IRIS_CENTRE,
    LIPS_INNER_LOWER,
    LIPS_INNER_UPPER,
    SIDES,
    Mesh,
)

DEPTH_SCALE = 1.4  # MediaPipe's relative depth is flatter than a head: turns use this much more relief...
EDGE_DEPTH_SCALE = 0.5  # ... in the middle of the face, and this much at its outline and beyond
RELIEF_EDGE = (0.4, 1.0)  # where the relief eases, as a fraction of the face's half width from its middle
SOFT_POSE_RAD = 0.35  # angles up to this are applied exactly
MAX_POSE_RAD = 0.45  # the softened angle never exceeds this
IOD_CM = 6.3  # the distance between the eye centres of an adult, for translation in cm
CAMERA_CM = 50.0  # tz scales the head as a camera this far away would
MAX_SHIFT = 0.35  # translation moves the head at most this fraction of the frame (width, height)
GAZE = {"x": 0.16, "y": 0.18}  # iris travel per unit gaze: x in IOD, y as a fraction of the eye opening
PRESS_PER_CLOSE = 1.0  # mouthPress per unit of mouthClose beyond jawOpen
RESTING = 0.05  # the portrait's own scores up to this are its resting face, which the neutral face keeps
BLINK_GAIN = 1.3  # the lids shut at eyeBlink = 0.77 (the tracker reads a real blink only once nearly shut)
_IMAGE = np.diag([1.0, -1.0, 1.0])  # camera frame (y up) <-> image frame (y down)
_INTERIOR = slice(1, -1)  # the 7 interior columns of an eye contour


@dataclass(frozen=True)
class FaceFrame:
    """The portrait's face frame in output px: `origin` between the eye centres, unit axes `ex` (towards the
    subject's left eye) and `ey` (down the face), `unit` px per face unit (the eye distance)."""

    origin: NDArray[np.float64]
    ex: NDArray[np.float64]
    ey: NDArray[np.float64]
    unit: float

    @classmethod
    def of(cls, landmarks: NDArray[np.floating]) -> FaceFrame:
        """The frame of (478, 3) landmarks (px)."""
        right, left = (landmarks[list(EYE_UPPER[s] + EYE_LOWER[s]), :2].mean(axis=0) for s in ("Right", "Left"))
        axis = left - right
        unit = float(np.linalg.norm(axis))
        ex = axis / unit
        return cls((left + right) / 2, ex, np.array([-ex[1], ex[0]]), unit)

    def to_face(self, points: NDArray[np.floating]) -> NDArray[np.float64]:
        """(N, 3) px points -> face units (z relative to the face's mean depth does not matter: only differences)."""
        d = points[:, :2] - self.origin
        return np.stack([d @ self.ex, d @ self.ey, points[:, 2]], axis=1) / self.unit

    def to_image(self, moves: NDArray[np.floating]) -> NDArray[np.float32]:
        """(..., 3) displacements in face units -> px."""
        xy = moves[..., :1] * self.ex + moves[..., 1:2] * self.ey
        return (np.concatenate([xy, moves[..., 2:]], axis=-1) * self.unit).astype(np.float32)


def soften(angle: NDArray[np.floating]) -> NDArray[np.float64]:
    """Angles as applied: unchanged up to SOFT_POSE_RAD, then easing smoothly (slope 1 → 0) to MAX_POSE_RAD."""
    a = np.asarray(angle, np.float64)
    span = MAX_POSE_RAD - SOFT_POSE_RAD
    over = np.maximum(np.abs(a) - SOFT_POSE_RAD, 0.0)
    return np.sign(a) * (np.minimum(np.abs(a), SOFT_POSE_RAD) + span * np.tanh(over / span))


def limit(amounts: NDArray[np.float64], rates: NDArray[np.float64], room: float) -> NDArray[np.float64]:
    """`amounts` (52,) with the positive contributions to `rates @ amounts` scaled back so it stays <= `room`."""
    parts = amounts * rates
    closing = parts.clip(min=0.0).sum()
    opening = parts.clip(max=0.0).sum()
    if closing + opening <= room or closing <= 0:
        return amounts
    scale = max(room - opening, 0.0) / closing
    return np.where(parts > 0, amounts * scale, amounts)


class Rig:
    """The portrait's rest mesh and fields in output px, and the per-frame deformation."""

    def __init__(
        self,
        mesh: Mesh,
        landmarks: NDArray[np.float32],
        scores: NDArray[np.float32],
        lid_reach: dict[str, float] | None = None,
        frame_size: tuple[int, int] | None = None,
        glasses: dict[str, NDArray[np.float64]] | None = None,
    ) -> None:
        self.rest = mesh.vertices.astype(np.float64)  # (V, 3) output px
        self.follow = mesh.follow.astype(np.float64)
        self.landmarks = landmarks.astype(np.float64)
        self.frame = FaceFrame.of(self.landmarks)
        geometry = Geometry(self.frame.to_face(self.rest), self.frame.to_face(self.landmarks), lid_reach, glasses)
        face_units = displacement_fields(geometry)
        self.fields = self.frame.to_image(face_units).astype(np.float64)  # (52, V, 3) px per unit
        self.scores = scores.astype(np.float64)
        self._rest = self._inputs(self.scores)
        self._floor = np.minimum(self._rest, RESTING)  # (52,) below this an input keeps the portrait's own
        oval = self.rest[list(FACE_OVAL)]
        width = float(np.ptp(oval[:, 0]))
        self.pivot = np.array([*(oval[:, :2].min(0) + oval[:, :2].max(0)) / 2, oval[:, 2].mean() - 0.1 * width])
        self.px_per_cm = self.frame.unit / IOD_CM
        self._max_shift = MAX_SHIFT * np.array([*(frame_size or (np.inf, np.inf)), 0.0])  # (3,) px
        self._centre = (oval[:, :2].min(0) + oval[:, :2].max(0)) / 2
        self._half_width = width / 2
        self._eye_rates = {s: self._closure_rates(face_units, s) for s in SIDES}
        self._lip_rates, self._lip_gap = self._opening_rates(face_units)
        inner = list(LIPS_INNER_UPPER[_INTERIOR]), list(LIPS_INNER_LOWER[_INTERIOR])
        self._lip_floor = np.minimum((self.rest[inner[1], :2] - self.rest[inner[0], :2]) @ self.frame.ey, 0.0)

    # --- limits -----------------------------------------------------------------------------------------------

    def _closure_rates(self, fields: NDArray[np.float32], side: str) -> NDArray[np.float64]:
        """(52,) how much of one eye's opening each blendshape closes per unit (negative: opens)."""
        upper, lower = list(EYE_UPPER[side][_INTERIOR]), list(EYE_LOWER[side][_INTERIOR])
        gap = (self.frame.to_face(self.rest[lower]) - self.frame.to_face(self.rest[upper]))[:, 1]
        closing = fields[:, upper, 1] - fields[:, lower, 1]  # (52, 7) face units
        return (closing / np.maximum(gap, 1e-3)).mean(axis=1)

    def _opening_rates(self, fields: NDArray[np.float32]) -> tuple[NDArray[np.float64], float]:
        """(52,) how much each blendshape closes the inner lips per unit (face units), and their rest gap."""
        upper, lower = list(LIPS_INNER_UPPER[_INTERIOR]), list(LIPS_INNER_LOWER[_INTERIOR])
        gap = (self.frame.to_face(self.rest[lower]) - self.frame.to_face(self.rest[upper]))[:, 1]
        return (fields[:, upper, 1] - fields[:, lower, 1]).max(axis=1), float(max(gap.min(), 0.0))

    def _inputs(self, weights: NDArray[np.floating]) -> NDArray[np.float64]:
        """(52,) blendshapes as the fields take them: clipped to [0, 1], mouthClose only as far as the jaw is open
        (closing lips that are already shut presses them: the rest goes to mouthPress)."""
        w = np.clip(np.asarray(weights, np.float64), 0.0, 1.0)
        close, jaw = BLENDSHAPE_INDEX["mouthClose"], BLENDSHAPE_INDEX["jawOpen"]
        press = [BLENDSHAPE_INDEX["mouthPressLeft"], BLENDSHAPE_INDEX["mouthPressRight"]]
        beyond = max(w[close] - w[jaw], 0.0)
        w[close] -= beyond
        w[press] = np.minimum(w[press] + PRESS_PER_CLOSE * beyond, 1.0)
        return w

    def amounts(self, weights: NDArray[np.floating]) -> NDArray[np.float64]:
        """(52,) how far each field is applied for input blendshapes `weights`: the input minus the portrait's own
        (both through `_inputs`), a blink closing what the other shapes leave of the eye, and no closing past
        shut eyes or lips. The portrait's own scores give all zeros."""
        w = np.maximum(self._inputs(weights), self._floor)
        a = w - self._rest
        for side in SIDES:
            a = self._blink(a, w, side)
        return limit(a, self._lip_rates, self._lip_gap)

    def _blink_share(self, w: NDArray[np.float64], side: str) -> float:
        """How much of what the eye's other shapes leave open one eye's blink closes, for inputs `w` (through
        `_inputs`): BLINK_GAIN * (input - portrait's) / (1 - portrait's), at most 1 (eyeBlink >= 1 / BLINK_GAIN
        always shuts the eye); negative where the input is below the portrait's own."""
        k = BLENDSHAPE_INDEX["eyeBlink" + side]
        return min(BLINK_GAIN * (w[k] - self._rest[k]) / max(1.0 - self._rest[k], 1e-3), 1.0)

    def _blink(self, a: NDArray[np.float64], w: NDArray[np.float64], side: str) -> NDArray[np.float64]:
        """`a` with one eye's other shapes (squint, wide, gaze, cheeks) closing no further than shut, and its
        blink field applied only where the blink opens the eye wider than the portrait's: a closing lid is not a
        deformation but the shut eye's texture uncovered (`lid_closures`, renderer.photo.lids)."""
        k = BLENDSHAPE_INDEX["eyeBlink" + side]
        rates = self._eye_rates[side].copy()
        rates[k] = 0.0
        a = limit(a, rates, 1.0)
        others = float(a @ rates)
        a[k] = min(self._blink_share(w, side), 0.0) * (1.0 - others) / max(self._eye_rates[side][k], 1e-3)
        return a

    def lid_closures(self, face: NDArray[np.floating]) -> dict[str, float]:
        """{side: how far the upper lid has come down over what the eye's other shapes leave open}: 0 as in the
        portrait, 1 shut (renderer.photo.lids.LidPainter draws it)."""
        w = np.maximum(self._inputs(face[BLENDSHAPES]), self._floor)
        return {side: max(self._blink_share(w, side), 0.0) for side in SIDES}

    # --- per frame --------------------------------------------------------------------------------------------

    def expression(self, face: NDArray[np.floating]) -> NDArray[np.float64]:
        """(V, 3) px: the rest mesh moved by the face's blendshapes and gaze (no pose)."""
        a = self.amounts(face[BLENDSHAPES])
        points = self.rest + np.tensordot(a, self.fields, axes=1)
        self._separate_lips(points)
        closures = self.lid_closures(face)
        for side in SIDES:
            self._place_eye(points, side, face, closures[side])
        return points

    def _separate_lips(self, points: NDArray[np.float64]) -> None:
        """Keep each inner lower-lip point below its upper partner (in the face frame; or no further above it than
        in the portrait, where the portrait's own lips overlap), in place."""
        upper, lower = list(LIPS_INNER_UPPER[_INTERIOR]), list(LIPS_INNER_LOWER[_INTERIOR])
        gap = (points[lower, :2] - points[upper, :2]) @ self.frame.ey
        crossed = np.minimum(gap - self._lip_floor, 0.0)[:, None] * self.frame.ey / 2
        points[upper, :2] += crossed
        points[lower, :2] -= crossed

    def gaze(self, face: NDArray[np.floating], side: str) -> tuple[float, float]:
        """(x, y) gaze of one eye relative to the portrait's, in units of full travel: +x the subject's left."""

        def look(direction: str) -> float:
            i = FACE_INDEX[f"eyeLook{direction}{side}"]
            return float(max(np.clip(face[i], 0.0, 1.0), self._floor[i]) - self._rest[i])

        outward = 1.0 if side == "Left" else -1.0
        return outward * (look("Out") - look("In")), look("Down") - look("Up")

    def _place_eye(self, points: NDArray[np.float64], side: str, face: NDArray[np.floating], closure: float) -> None:
        """Put one eye's middle row between its (moved) lids and shift it with the gaze: the iris moves inside
        the opening, its travel shrinking as the lids close (and as the upper lid comes down, `closure`)."""
        upper, lower = list(EYE_UPPER[side][_INTERIOR]), list(EYE_LOWER[side][_INTERIOR])
        gx, gy = self.gaze(face, side)
        rest_gap = (self.rest[lower, :2] - self.rest[upper, :2]) @ self.frame.ey
        gap = (points[lower, :2] - points[upper, :2]) @ self.frame.ey
        openness = np.clip(gap / np.maximum(rest_gap, 1e-3), 0.0, 1.5) * (1.0 - closure)
        t = np.clip(0.5 + GAZE["y"] * gy, 0.25, 0.75)
        row = np.arange(EYE_ROW[side], EYE_ROW[side] + 7)
        points[row] = points[upper] + t * (points[lower] - points[upper])
        iris_x = (self.landmarks[IRIS_CENTRE[side], :2] - self.frame.origin) @ self.frame.ex
        x = (self.rest[row, :2] - self.frame.origin) @ self.frame.ex
        eye_width = abs(x[-1] - x[0]) * 8 / 6
        bump = np.exp(-(((x - iris_x) / (0.35 * eye_width)) ** 2))
        shift = GAZE["x"] * gx * self.frame.unit * bump * np.minimum(openness, 1.0)
        points[row, :2] += shift[:, None] * self.frame.ex

    def posed(
        self, points: NDArray[np.float64], face: NDArray[np.floating], follow: NDArray[np.float64] | None = None
    ) -> NDArray[np.float64]:
        """(N, 3) px: `points` turned, moved and scaled with the head (each by its follow weight)."""
        pitch, yaw, roll = soften(face[ROTATION])
        turn = _IMAGE @ rotation_matrix(pitch, yaw, roll) @ _IMAGE
        tx, ty, tz = (float(face[FACE_INDEX[n]]) for n in ("tx", "ty", "tz"))
        scale = CAMERA_CM / (CAMERA_CM - 10.0 * float(np.clip(tz, -2.0, 2.0)))
        shift = np.clip(np.array([tx, -ty, 0.0]) * 10.0 * self.px_per_cm, -self._max_shift, self._max_shift)
        offset = points - self.pivot
        offset[:, 2] *= DEPTH_SCALE
        moved = offset @ turn.T
        eased = offset.copy()  # the horizontal parallax uses less relief towards the face's sides
        eased[:, 2] *= self._relief(points) / DEPTH_SCALE
        moved[:, 0] = eased @ turn[0]
        moved[:, 2] /= DEPTH_SCALE
        moved = self.pivot + scale * moved + shift
        weights = self.follow if follow is None else follow
        return points + weights[:, None] * (moved - points)

    def _relief(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """(N,) how much each point's depth counts in the horizontal parallax of a turn: DEPTH_SCALE on the middle
        of the face, easing to EDGE_DEPTH_SCALE towards its sides and beyond (so the side turning towards the
        camera, which the photo saw at a grazing angle, is not stretched into streaks)."""
        r = np.abs((points[:, :2] - self._centre) @ self.frame.ex) / self._half_width
        t = np.clip((r - RELIEF_EDGE[0]) / (RELIEF_EDGE[1] - RELIEF_EDGE[0]), 0.0, 1.0)
        return DEPTH_SCALE + (EDGE_DEPTH_SCALE - DEPTH_SCALE) * t * t * (3 - 2 * t)

    def vertices(self, face: NDArray[np.floating]) -> NDArray[np.float64]:
        """(V, 3) output px of every mesh vertex for one (58,) face."""
        return self.posed(self.expression(face), face)
