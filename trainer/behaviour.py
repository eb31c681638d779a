"""How listeners behave, measured on 58-float face frames: the lag of a smile returned.

    lag, r = reaction_lag(smile(speaker), smile(listener))   # frames (0..50) and the correlation there

How much a face moves is `renderer.face.motion_energy`. The REACT metrics (`trainer.metrics`) score emotions against appropriate listeners; these read the face itself.
The lag is behavioural (the listener smiles back a little after the speaker, as the corpus's listeners do), learned
by the model, and is kept apart from the pipeline's delay (`benchmarks/room.py` measures that).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from renderer.face import FACE_INDEX, FPS

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
