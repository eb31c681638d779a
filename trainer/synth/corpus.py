"""The synthetic dyadic corpus on disk, in the REACT 2024 layout.

    reactdiff-trainer synth --out data/synth --clips 100 --seconds 30 --seed 0

A *script* is one speaker performance (espeak-ng speech + a face driven by it). Each script gets L listener
reactions (``--listeners-per-speaker``, default 3), each from a different persona; a *session* is one
speaker-listener pair. ``--clips N`` asks for N sessions: the corpus holds ``max(3, ceil(N / L))`` scripts, so
N is rounded up to whole scripts (and to at least one script per split). Scripts, not sessions, are split into
train/val/test about 70/15/15 (val and test at least one script each), so val and test speakers are unseen.

Files (``<session>`` = ``g{script:04d}l{listener}``, both counted from 0; the speaker is ``Expert_video``, the
listener ``Novice_video``; every session stores its own copy of its speaker's files, as REACT does)::

    <out>/<split>/Audio_files/Synth/<session>/<role>/1.wav     16 kHz mono int16, seconds * 16000 samples
    <out>/<split>/3D_FV_files/Synth/<session>/<role>/1.npy     float32 (T, 58), T = seconds * 25 + 1
    <out>/<split>/Emotion/Synth/<session>/<role>/1.csv         header EMOTION_NAMES, T rows, 6 decimals
    <out>/<split>/Video_files/Synth/<session>/<role>/1.mp4     256x256, 25 fps (only with --video; looks below)
    <out>/<split>.csv                                          ",speaker_path,listener_path", one row per session
    <out>/neighbour_emotion_<split>.npy                        (2M, 2M) bool appropriateness matrix
    <out>/synth_manifest.json                                  seed, options, counts, tool versions, personas

Neighbour matrix rule, for the M sessions of a split in pairs-CSV order: rows 0..M-1 are the sessions
(speaker → listener), rows M..2M-1 the same sessions with roles swapped (the listener speaks, the original
speaker "reacts"). Entry [k, j] is True when the listener of sample j is an appropriate reaction for sample k:

- forward rows k < M: every forward sample j < M of the same script (all L listeners reacted to this very
  speaker performance); never a reversed sample;
- reversed rows k >= M: the reversed samples j >= M of the same script, j = k included (their "listener" is the
  original speaker, identical across the script); never a forward sample.

So the matrix is block-diagonal, two copies of "same script", and its diagonal is all True.

With ``--video`` every clip shows a person of its own (trainer.synth.looks): a real portrait of the chosen pool
(``--portraits train|unseen``, trainer.synth.portraits) animated by the photo avatar, or for a share of the clips
(``--vector-share``) a vector style, seen through a camera of its own (mirroring, framing, colour and light,
sharpness, compression). The listener's clip is a speaker too (the reversed samples), so it gets a look as well.

Every script draws its random numbers from ``(seed, script index)`` alone, so the output does not depend on the
number of worker processes, and the same seed gives byte-identical wav, npy, csv, json and npy files (and mp4
files on one machine). The looks come from a stream of their own: the same seed with the other portrait pool
gives the same wav, npy and csv files and the same cameras, with other people in the videos.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import logging
import math
import multiprocessing
import re
import shutil
import wave
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from renderer.face import EMOTION_NAMES, FPS, emotion_from_face
from trainer.synth import espeak
from trainer.synth.listener import (
    PERSONA_NAMES,
    Persona,
    SpeakerCues,
    draw_persona,
    listener_face,
    plan_backchannels,
    sample_personas,
    smile_of,
)
from trainer.synth.looks import POOLS, Look, LookOptions, cast_looks, portraits_shown, prepare_portraits, render_look
from trainer.synth.speaker import emphasis_frames, laughs, question_ends, sample_speaker_style, speaker_face
from trainer.synth.speech import (
    DEFAULT_VOICES,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    SPEECH_RMS,
    audio_cues,
    frame_count,
    mix_at,
    room_tone,
    sample_voice_style,
    set_level,
    speak,
    speak_monologue,
)

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
SITE = "Synth"
SPEAKER_ROLE, LISTENER_ROLE = "Expert_video", "Novice_video"
CLIP_NAME = "1"
MIN_SECONDS = 4.0
MAX_LISTENERS = 10
VIDEO_SIZE = (256, 256)
BACKCHANNEL_RMS = 0.55 * SPEECH_RMS  # listeners' "mm-hm" is quieter than the speaker
KNOWN_OUTPUTS = (*SPLITS, *(f"{s}.csv" for s in SPLITS), *(f"neighbour_emotion_{s}.npy" for s in SPLITS))
MANIFEST = "synth_manifest.json"


class SynthConfigError(ValueError):
    """An option of `synth` or `clip` that cannot work; the message names it and what to use instead."""


@dataclass(frozen=True)
class SynthConfig:
    """Options of `reactdiff-trainer synth` (see the module docstring for what they produce)."""

    out: Path
    """Corpus root folder."""
    clips: int
    """Speaker-listener sessions wanted; rounded up to whole scripts."""
    seconds: float
    """Length of every clip in seconds (REACT: 30)."""
    seed: int = 0
    """Seed of everything random; the same seed gives the same bytes."""
    listeners_per_speaker: int = 3
    """Listener reactions (personas) per speaker performance."""
    voices: tuple[str, ...] = DEFAULT_VOICES
    """espeak-ng English voices to draw from (``LANG`` or ``LANG+VARIANT``)."""
    video: bool = False
    """Also render mp4 videos of both faces."""
    looks: LookOptions = field(default_factory=LookOptions)
    """Who the videos show and through which cameras (with `video`)."""
    workers: int = 1
    """Worker processes (does not change the output)."""
    overwrite: bool = False
    """Replace an existing corpus in `out` instead of refusing to write into a non-empty folder."""


@dataclass(frozen=True)
class ScriptJob:
    """Everything a worker process needs to generate and write one script."""

    config: SynthConfig
    binary: str
    index: int
    split: str


@dataclass
class Performance:
    """One person's side of a clip."""

    audio: NDArray[np.float32]  # (seconds * 16000,) in [-1, 1]
    face: NDArray[np.float32]  # (T, 58)
    info: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def emotion_text(self) -> str:
        """The emotion CSV, formatted once however many sessions store this performance."""
        return emotion_csv(self.face)


# --- pure layout ------------------------------------------------------------------------------------------


def script_count(clips: int, listeners_per_speaker: int) -> int:
    """Scripts needed for `clips` sessions: whole scripts, at least one per split."""
    return max(len(SPLITS), math.ceil(clips / listeners_per_speaker))


def split_scripts(scripts: int) -> dict[str, range]:
    """Script indices of each split: about 70/15/15, val and test at least one script each, train first."""
    val = test = max(1, round(0.15 * scripts))
    train = scripts - val - test
    if train < 1:
        raise ValueError(f"{scripts} scripts cannot fill train, val and test; need at least 3")
    return {"train": range(train), "val": range(train, train + val), "test": range(train + val, scripts)}


def session_name(script: int, listener: int) -> str:
    return f"g{script:04d}l{listener:d}"


def session_of(clip: str) -> tuple[int, int] | None:
    """(script, listener) of a clip id as the pairs CSV names it (``Synth/g0034l2/...``); None for other ids."""
    match = re.fullmatch(rf"{SITE}/g(\d{{4,}})l(\d+)/[^/]+/{CLIP_NAME}", clip)
    return None if match is None else (int(match[1]), int(match[2]))


def clip_id(session: str, role: str) -> str:
    """Path of a clip relative to its split folder's kind folders, without extension (as in the pairs CSV)."""
    return f"{SITE}/{session}/{role}/{CLIP_NAME}"


def clip_path(out: Path, split: str, kind: str, session: str, role: str, ext: str) -> Path:
    """``<out>/<split>/<kind>/Synth/<session>/<role>/1.<ext>``."""
    return out / split / kind / f"{clip_id(session, role)}.{ext}"


def pairs_csv(sessions: list[str]) -> str:
    """A REACT pairs CSV: header ``,speaker_path,listener_path``, then one numbered row per session."""
    rows = [f"{i},{clip_id(s, SPEAKER_ROLE)},{clip_id(s, LISTENER_ROLE)}" for i, s in enumerate(sessions)]
    return "\n".join([",speaker_path,listener_path", *rows]) + "\n"


def neighbour_matrix(script_of_session: list[int]) -> NDArray[np.bool_]:
    """(2M, 2M) appropriateness over M sessions given each session's script (rule in the module docstring)."""
    scripts = np.asarray(script_of_session)
    same = scripts[:, None] == scripts[None, :]
    m = len(scripts)
    out = np.zeros((2 * m, 2 * m), dtype=bool)
    out[:m, :m] = same
    out[m:, m:] = same
    return out


def emotion_csv(face: NDArray[np.float32]) -> str:
    """The emotion CSV of (T, 58) faces: header, then T rows of 25 values with 6 decimals."""
    emotion = np.round(emotion_from_face(face).astype(np.float64), 6) + 0.0  # + 0.0 turns -0.0 into 0.0
    rows = (",".join(f"{v:.6f}" for v in row) for row in emotion)
    return "\n".join([",".join(EMOTION_NAMES), *rows]) + "\n"


def wav_bytes(audio: NDArray[np.float32]) -> NDArray[np.int16]:
    """float [-1, 1] → little-endian int16 samples."""
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")


# --- generating one script -------------------------------------------------------------------------------


def script_rngs(seed: int, index: int, listeners: int) -> list[np.random.Generator]:
    """Independent generators for script `index`: speech, speaker face, personas, then one per listener."""
    children = np.random.SeedSequence([seed, index]).spawn(3 + listeners)
    return [np.random.default_rng(child) for child in children]


def listener_track(
    binary: str, rng: np.random.Generator, persona: Persona, words: list[tuple[int, str]], samples: int
) -> NDArray[np.float32]:
    """A listener's audio: room tone plus each (frame, word) backchannel spoken from that frame on."""
    audio = room_tone(rng, samples)
    for frame, word in words:
        mix_at(audio, set_level(speak(binary, word, persona.voice), BACKCHANNEL_RMS), frame * SAMPLES_PER_FRAME)
    return np.clip(audio, -1.0, 1.0)


def script_speaker(
    binary: str, config: SynthConfig, index: int
) -> tuple[Performance, SpeakerCues, list[tuple[Persona, np.random.Generator]]]:
    """The speaker performance of script `index`, the cues its listeners react to, and each listener's persona
    with the generator that draws its reaction."""
    speech_rng, face_rng, persona_rng, *listener_rngs = script_rngs(config.seed, index, config.listeners_per_speaker)
    voice = sample_voice_style(speech_rng, config.voices)
    audio, utterances = speak_monologue(binary, speech_rng, voice, config.seconds)
    cues = audio_cues(audio, frame_count(config.seconds))
    style = sample_speaker_style(face_rng)
    face = speaker_face(cues, utterances, style, face_rng)
    speaker = Performance(audio, face, {"voice": asdict(voice), "utterances": [u.text for u in utterances]})
    seen = SpeakerCues(
        cues.active, smile_of(face), question_ends(utterances), emphasis_frames(cues), laughs(utterances)
    )
    voices = [sample_voice_style(persona_rng, config.voices) for _ in listener_rngs]
    personas = sample_personas(persona_rng, len(listener_rngs), voices)
    return speaker, seen, list(zip(personas, listener_rngs, strict=True))


def listener_performance(
    binary: str, seen: SpeakerCues, persona: Persona, rng: np.random.Generator, seconds: float
) -> Performance:
    """How one listener of `persona` reacts to a speaker who shows `seen`: where it nods and what it says
    (drawn from `rng`), its own audio, and its face."""
    frames, samples = frame_count(seconds), round(seconds * SAMPLE_RATE)
    plan = plan_backchannels(seen, persona, rng)
    words = [(b.frame, b.word) for b in plan if b.word is not None]
    own = listener_track(binary, rng, persona, words, samples)
    info = {**asdict(persona), "nods": len(plan), "backchannels": [w for _, w in words]}
    return Performance(own, listener_face(seen, persona, plan, audio_cues(own, frames), rng), info)


def generate_script(binary: str, config: SynthConfig, index: int) -> tuple[Performance, list[Performance]]:
    """The speaker performance of script `index` and its listeners' reactions."""
    speaker, seen, cast = script_speaker(binary, config, index)
    return speaker, [listener_performance(binary, seen, persona, rng, config.seconds) for persona, rng in cast]


ANY_PERSONA = "any"  # redraw_listeners: each draw of a persona drawn uniformly


def redraw_listeners(
    binary: str, config: SynthConfig, index: int, asked: Mapping[str | None, int], *, seed: int = 1
) -> tuple[NDArray[np.float32], dict[str | None, list[NDArray[np.float32]]]]:
    """Fresh listeners for script `index` from the generator that wrote it, its speaker performed once: the
    speaker's face (T, 58), and for each persona asked (persona -> draws) per listener of the script that many new
    reactions (draws, T, 58) to the same speaker performance.

    Each draw is a new individual (persona parameters drawn again) of the listener's own persona (None), of the
    persona named, or with ANY_PERSONA of a persona drawn uniformly for each draw (a listener who is no one in
    particular). Draws come from (`seed`, script, listener, draw, persona) alone, never from the streams the
    corpus used.
    """
    unknown = [p for p in asked if p not in (None, ANY_PERSONA, *PERSONA_NAMES)]
    if unknown:
        raise ValueError(f"unknown persona {unknown[0]!r}: give one of {', '.join(PERSONA_NAMES)} or {ANY_PERSONA!r}")
    speaker, seen, cast = script_speaker(binary, config, index)
    out: dict[str | None, list[NDArray[np.float32]]] = {}
    for persona, draws in asked.items():
        stream = 0 if persona is None else 1 + [*PERSONA_NAMES, ANY_PERSONA].index(persona)
        out[persona] = []
        for j, (own, _) in enumerate(cast):
            faces = []
            for k in range(draws):
                rng = np.random.default_rng([seed, index, j, k, stream])
                name = own.name if persona is None else persona
                if name == ANY_PERSONA:
                    name = PERSONA_NAMES[int(rng.integers(len(PERSONA_NAMES)))]
                person = draw_persona(name, rng, own.voice)
                faces.append(listener_performance(binary, seen, person, rng, config.seconds).face)
            out[persona].append(np.stack(faces).astype(np.float32))
    return speaker.face, out


# --- writing ---------------------------------------------------------------------------------------------


def _write_wav(path: Path, audio: NDArray[np.float32]) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(wav_bytes(audio).tobytes())


def _write_performance(out: Path, split: str, session: str, role: str, person: Performance) -> None:
    paths = {kind: clip_path(out, split, kind, session, role, ext) for kind, ext in _KINDS}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    _write_wav(paths["Audio_files"], person.audio)
    np.save(paths["3D_FV_files"], person.face.astype(np.float32))
    paths["Emotion"].write_text(person.emotion_text, encoding="utf-8")


_KINDS = (("Audio_files", "wav"), ("3D_FV_files", "npy"), ("Emotion", "csv"))


def _write_videos(out: Path, split: str, sessions: list[str], people: list[Performance], looks: list[Look]) -> None:
    """The videos of one script: `people` and `looks` are the speaker's, then each session's listener's."""
    speaker, *listeners = people
    first = None
    for session, listener, listener_look in zip(sessions, listeners, looks[1:], strict=True):
        for role, person, look in ((SPEAKER_ROLE, speaker, looks[0]), (LISTENER_ROLE, listener, listener_look)):
            path = clip_path(out, split, "Video_files", session, role, "mp4")
            path.parent.mkdir(parents=True, exist_ok=True)
            if role == SPEAKER_ROLE and first is not None:
                shutil.copyfile(first, path)  # the same speaker video in every session of the script
                continue
            render_look(path, person.face, look, VIDEO_SIZE)
            first = first or path


def run_job(job: ScriptJob) -> dict[str, Any]:
    """Generate script `job.index` and write all its sessions; returns its manifest entry."""
    config = job.config
    speaker, listeners = generate_script(job.binary, config, job.index)
    sessions = [session_name(job.index, i) for i in range(len(listeners))]
    for session, listener in zip(sessions, listeners, strict=True):
        _write_performance(config.out, job.split, session, SPEAKER_ROLE, speaker)
        _write_performance(config.out, job.split, session, LISTENER_ROLE, listener)
    entry = {"split": job.split, "speaker": speaker.info, "listeners": [p.info for p in listeners]}
    if config.video:
        cv2.setNumThreads(1)  # each worker process draws and encodes on one core; OpenCV's own threads only contend
        looks = cast_looks(config.seed, job.index, 1 + len(listeners), config.looks, VIDEO_SIZE[1])
        _write_videos(config.out, job.split, sessions, [speaker, *listeners], looks)
        entry["looks"] = {"speaker": looks[0].as_dict(), "listeners": [look.as_dict() for look in looks[1:]]}
    return entry


# --- the whole corpus ------------------------------------------------------------------------------------


def check_config(config: SynthConfig) -> None:
    """Raise SynthConfigError naming the option that cannot work and what to use instead."""
    if config.clips < len(SPLITS):
        raise SynthConfigError(
            f"--clips {config.clips}: need at least 3 sessions (one script for each of train/val/test)"
        )
    if not config.seconds >= MIN_SECONDS or not math.isfinite(config.seconds):
        raise SynthConfigError(
            f"--seconds {config.seconds}: clips must last at least {MIN_SECONDS:g} s (REACT uses 30)"
        )
    if not 1 <= config.listeners_per_speaker <= MAX_LISTENERS:
        raise SynthConfigError(f"--listeners-per-speaker {config.listeners_per_speaker}: use 1 to {MAX_LISTENERS}")
    if config.seed < 0:
        raise SynthConfigError(f"--seed {config.seed}: use a non-negative integer")
    if config.workers < 1:
        raise SynthConfigError(f"--workers {config.workers}: use at least 1")
    if not config.voices:
        raise SynthConfigError("--voices: give at least one espeak-ng voice, e.g. en-us,en-gb")
    if config.looks.pool not in POOLS:
        raise SynthConfigError(f"--portraits {config.looks.pool}: choose one of {', '.join(POOLS)}")
    if not 0.0 <= config.looks.vector_share <= 1.0:
        raise SynthConfigError(f"--vector-share {config.looks.vector_share}: give a share from 0 to 1")


def prepare_out(out: Path, overwrite: bool) -> None:
    """Create `out`; refuse a non-empty folder unless `overwrite`, which removes a previous corpus's files only."""
    if out.exists() and not out.is_dir():
        raise SynthConfigError(f"--out {out}: is a file; give a folder for the corpus")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise SynthConfigError(f"--out {out}: folder is not empty; pass --overwrite to replace a corpus there")
        for name in (*KNOWN_OUTPUTS, MANIFEST):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _run_jobs(jobs: list[ScriptJob], workers: int) -> list[dict[str, Any]]:
    """Run `run_job` over `jobs` (in `workers` processes when more than one) with a progress bar."""
    results: dict[int, dict[str, Any]] = {}
    with tqdm(total=len(jobs), desc="synth scripts", unit="script") as bar:
        if workers == 1:
            for job in jobs:
                results[job.index] = run_job(job)
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")  # fork is unsafe in threaded parents
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = {pool.submit(run_job, job): job.index for job in jobs}
                for future in concurrent.futures.as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update()
    return [results[i] for i in sorted(results)]


def write_corpus(config: SynthConfig) -> dict[str, Any]:
    """Write the whole corpus described by `config`; returns the manifest (also written as JSON)."""
    check_config(config)
    binary = espeak.find_espeak()
    espeak.check_voices(binary, list(config.voices))
    if config.video:
        prepare_portraits(config.looks.pool)  # checked, made and prepared once, before any worker needs them
    prepare_out(config.out, config.overwrite)
    splits = split_scripts(script_count(config.clips, config.listeners_per_speaker))
    jobs = [ScriptJob(config, binary, index, split) for split, indices in splits.items() for index in indices]
    log.info("writing %d scripts x %d listeners to %s", len(jobs), config.listeners_per_speaker, config.out)
    scripts = _run_jobs(jobs, min(config.workers, len(jobs)))
    for split, indices in splits.items():
        sessions = [(i, session_name(i, j)) for i in indices for j in range(config.listeners_per_speaker)]
        (config.out / f"{split}.csv").write_text(pairs_csv([s for _, s in sessions]), encoding="utf-8")
        np.save(config.out / f"neighbour_emotion_{split}.npy", neighbour_matrix([i for i, _ in sessions]))
    manifest = _manifest(config, binary, splits, scripts)
    (config.out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _manifest(
    config: SynthConfig, binary: str, splits: dict[str, range], scripts: list[dict[str, Any]]
) -> dict[str, Any]:
    """Seed, options, counts, tool versions and per-script details; nothing that depends on time or place."""
    listeners = config.listeners_per_speaker
    return {
        "corpus": "reactdiff-live synthetic dyadic corpus (REACT 2024 layout)",
        "seed": config.seed,
        "options": {
            "clips": config.clips, "seconds": config.seconds, "listeners_per_speaker": listeners,
            "voices": list(config.voices), "video": config.video,
            **({"looks": asdict(config.looks)} if config.video else {}),
        },
        "counts": {
            "scripts": {split: len(r) for split, r in splits.items()},
            "sessions": {split: len(r) * listeners for split, r in splits.items()},
            "frames_per_clip": frame_count(config.seconds), "fps": FPS, "audio_sample_rate": SAMPLE_RATE,
        },
        "tools": {"espeak-ng": espeak.espeak_version(binary), "numpy": np.__version__},
        **({"portraits": portraits_shown(config.looks.pool)} if config.video else {}),
        "scripts": {f"g{i:04d}": entry for i, entry in enumerate(scripts)},
    }  # fmt: skip


def config_from_manifest(root: Path) -> SynthConfig:
    """The options that wrote the synthetic corpus at `root`, read back from its manifest (the looks are not
    needed to draw faces again and keep their defaults). Raises SynthConfigError where there is none or it is
    unreadable."""
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        options = manifest["options"]
        return SynthConfig(
            out=root, clips=int(options["clips"]), seconds=float(options["seconds"]), seed=int(manifest["seed"]),
            listeners_per_speaker=int(options["listeners_per_speaker"]), voices=tuple(options["voices"]),
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SynthConfigError(f"{path}: cannot read the options that wrote this corpus ({exc!r})") from None
