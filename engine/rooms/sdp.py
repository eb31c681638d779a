"""A remote participant's SDP, checked before aiortc acts on it.

Offers and answers come from other participants, so they are hostile input. aiortc's own parser is lenient (text
without a single media section parses) and some omissions only fail later inside its connection task (an offer
without a DTLS fingerprint trips an assertion there, leaving a connection that never connects). So every remote SDP
is parsed with aiortc's parser and then held to what a connection needs; the checks also keep one peer from making
the engine send connectivity checks to many addresses (a reflector) or hold many media sections open.

    description = check_remote_sdp(sdp, "offer")   # NegotiationError naming the problem
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from aiortc.rtcdtlstransport import X509_DIGEST_ALGORITHMS
from aiortc.sdp import MediaDescription, SessionDescription

MAX_MEDIA_SECTIONS = 8  # the room page offers three (audio, video, the reactions channel)
MAX_CANDIDATES = 16  # per media section; a browser on a laptop gathers a handful
MEDIA_KINDS = ("audio", "video", "application")
FINGERPRINT_ALGORITHMS = frozenset(X509_DIGEST_ALGORITHMS)  # those aiortc can verify: sha-256, sha-384, sha-512
BROADCAST = ipaddress.IPv4Address("255.255.255.255")


class NegotiationError(ValueError):
    """One participant's offer or answer cannot be used; only that participant's connection is affected."""


def check_remote_sdp(sdp: str, kind: Literal["offer", "answer"]) -> SessionDescription:
    """Parse a remote SDP and check it can make a connection; raises NegotiationError saying what is wrong."""
    try:
        description = SessionDescription.parse(sdp)
    except Exception as err:  # aiortc's parser raises whatever its string handling hits (ValueError, KeyError, ...)
        raise NegotiationError(f"the {kind} is not a valid SDP ({err.__class__.__name__}: {err})") from err
    if not 1 <= len(description.media) <= MAX_MEDIA_SECTIONS:
        raise NegotiationError(
            f"the {kind} has {len(description.media)} media sections; expected 1 to {MAX_MEDIA_SECTIONS}"
        )
    for index, media in enumerate(description.media):
        problem = _media_problem(media)
        if problem is not None:
            raise NegotiationError(f"the {kind}'s media section {index} ({media.kind}): {problem}")
    problem = _bundle_problem(description)
    if problem is not None:
        raise NegotiationError(f"the {kind}: {problem}")
    return description


def _bundle_problem(description: SessionDescription) -> str | None:
    """Every section names itself (a=mid) once, and a BUNDLE group lists only those names: aiortc moves bundled
    sections onto the first listed section's transport, and an unknown first name leaves them without one."""
    mids = [media.rtp.muxId for media in description.media]
    if not all(mids):
        return "a media section has no a=mid"
    if len(set(mids)) != len(mids):
        return f"media sections share an a=mid ({', '.join(str(mid) for mid in mids)})"
    for group in description.group:
        unknown = [str(item) for item in group.items if item not in mids]
        if group.semantic == "BUNDLE" and (unknown or not group.items):
            return f"a=group:BUNDLE names {', '.join(unknown) or 'nothing'}, not a media section's a=mid"
    return None


def _media_problem(media: MediaDescription) -> str | None:
    if media.kind not in MEDIA_KINDS:
        return f"unknown media kind; expected one of {', '.join(MEDIA_KINDS)}"
    if media.port == 0:
        return None  # rejected or stopped: nothing will be connected for it
    if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
        return "no ICE credentials (a=ice-ufrag and a=ice-pwd)"
    fingerprints = media.dtls.fingerprints if media.dtls is not None else []
    if not any(f.algorithm.lower() in FINGERPRINT_ALGORITHMS for f in fingerprints):
        return f"no DTLS fingerprint with a supported algorithm ({', '.join(sorted(FINGERPRINT_ALGORITHMS))})"
    if len(media.ice_candidates) > MAX_CANDIDATES:
        return f"{len(media.ice_candidates)} ICE candidates; at most {MAX_CANDIDATES} are accepted"
    for candidate in media.ice_candidates:
        if not _unicast_or_mdns(candidate.ip):
            return f"ICE candidate address {candidate.ip!r} is not a unicast address or an mDNS name"
    return None


def _unicast_or_mdns(host: str) -> bool:
    """A host a connectivity check may be sent to: one unicast IP address, or a browser's `<uuid>.local` name."""
    if host.endswith(".local"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not (address.is_multicast or address.is_unspecified or address == BROADCAST)
