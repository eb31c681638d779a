"""How listeners behave, measured on 58-float face frames: the lag of a smile returned, whose persona a reaction is.

    lag, r = reaction_lag(smile(speaker), smile(listener))   # frames (0..50) and the correlation there
    NearestCentroid({"nodder": reactions, ...}).predict(generated)   # persona names from motion statistics

How much a face moves is `renderer.face.motion_energy`. The REACT metrics (`trainer.metrics`) score emotions
against appropriate listeners; these read the face itself. The lag is behavioural (the listener smiles back a
little after the speaker, as the corpus's listeners do), learned by the model, and is kept apart from the
pipeline's delay (`benchmarks/room.py` measures that).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from renderer.face import FACE_DIM, FACE_INDEX, FPS

MAX_LAG = 2 * FPS  # frames: a smile returned more than 2 s later is not a reaction to it
SMILE = [FACE_INDEX["mouthSmileLeft"], FACE_INDEX["mouthSmileRight"]]


def smile(frames: NDArray[np.floating]) -> NDArray[np.float64]:
    """(..., T) the mean of mouthSmileLeft/Right of (..., T, >=58) face frames."""
    return frames[..., SMILE].astype(np.float64).mean(-1)


def lagged_correlation(leader: NDArray[np.floating], follower: NDArray[np.floating], max_lag: int = MAX_LAG) -> NDArray:
    """(max_lag + 1,) Pearson correlation of follower(t + lag) with leader(t), (T,) each, for lag 0..max_lag
    frames; 0 where either side is constant over the overlap."""
    out = np.zeros(max_lag + 1)
    for lag in range(min(max_lag, len(leader) - 2) + 1):
        a, b = leader[: len(leader) - lag], follower[lag:]
        if a.std() > 1e-6 and b.std() > 1e-6:
            out[lag] = np.corrcoef(a, b)[0, 1]
    return out


def reaction_lag(
    leader: NDArray[np.floating], follower: NDArray[np.floating], max_lag: int = MAX_LAG
) -> tuple[int, float]:
    """(lag in frames, correlation) at which follower (T,) best follows leader (T,), over lags 0..max_lag."""
    r = lagged_correlation(leader, follower, max_lag)
    lag = int(np.argmax(r))
    return lag, float(r[lag])


def median_reaction_lag_ms(speaker_faces: NDArray[np.floating], listener_faces: NDArray[np.floating]) -> float:
    """Median over pairs of the smile-back lag in ms: speaker (N, T, >=58) and listener (N, T, >=58) faces."""
    lags = [
        reaction_lag(smile(s), smile(listener))[0] for s, listener in zip(speaker_faces, listener_faces, strict=True)
    ]
    return float(np.median(lags)) * 1000 / FPS


def motion_statistics(frames: NDArray[np.floating]) -> NDArray[np.float64]:
    """(..., 174) simple statistics of (..., T, >=58) face frames: per face number its mean, its spread over time
    and its mean speed (|x(t+1) - x(t)|)."""
    face = np.asarray(frames, np.float64)[..., :FACE_DIM]
    speed = np.abs(np.diff(face, axis=-2)).mean(axis=-2)
    return np.concatenate([face.mean(axis=-2), face.std(axis=-2), speed], axis=-1)


class NearestCentroid:
    """Names the persona behind a reaction: the persona whose reactions' mean `motion_statistics` lies nearest.
    Each kind of statistic (means, spreads, speeds) is centred per face number and scaled by one spread over all
    numbers, so numbers that barely differ between reactions weigh little (per-number scaling would blow their
    noise up to the size of a nod)."""

    def __init__(self, reactions: dict[str, NDArray[np.floating]]) -> None:
        """`reactions`: persona name -> (n, T, >=58) reactions of listeners of that persona."""
        stats = {name: motion_statistics(r) for name, r in reactions.items()}
        pooled = np.concatenate(list(stats.values()))
        self.mean = pooled.mean(axis=0)
        blocks = (pooled - self.mean).reshape(len(pooled), 3, FACE_DIM)
        self.scale = np.repeat(blocks.std(axis=(0, 2)) + 1e-9, FACE_DIM)
        self.names = sorted(stats)
        self.centroids = np.stack([((stats[n] - self.mean) / self.scale).mean(axis=0) for n in self.names])

    def predict(self, reactions: NDArray[np.floating]) -> list[str]:
        """The persona named for each of (n, T, >=58) reactions."""
        z = (motion_statistics(reactions) - self.mean) / self.scale  # (n, 174)
        distance = np.linalg.norm(z[:, None] - self.centroids[None], axis=-1)  # (n, personas)
        return [self.names[i] for i in distance.argmin(axis=1)]

    def accuracy(self, reactions: dict[str, NDArray[np.floating]]) -> float:
        """Share of reactions (persona name -> (n, T, >=58)) named as their persona."""
        hits = [name == said for name, r in reactions.items() for said in self.predict(r)]
        return float(np.mean(hits))
