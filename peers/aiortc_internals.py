"""The one place that reaches into aiortc's and aioice's private state, pinned to their versions.

aiortc 1.16 has no public API for an encoder's bitrate, the selected ICE candidate pair or a
receiver's frame assembly. Rebound uses three patch points, all per connection (nothing is
patched globally):

- a sender's encoder (`RTCRtpSender.__encoder`), set before the first frame, and the codecs
  a transceiver negotiated (`RTCRtpTransceiver._codecs`) (peers.encoders);
- the nominated ICE candidate pair (`aioice.Connection._nominated`), read only (peers.link);
- a video receiver's `_handle_rtp_packet`, replaced on the instance, with the receiver's
  private state it needs (peers.receive).

Each name was read in the pinned versions' source; importing this module with any other
version fails at once, naming the versions, instead of misbehaving at run time.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

PINNED = {"aiortc": "1.16.0", "aioice": "0.13.0"}
"""The versions whose private attributes this module names."""


class AiortcVersionError(ImportError):
    """aiortc or aioice is not the version Rebound's patch points were written against."""


def check_versions(installed: dict[str, str] | None = None) -> None:
    """AiortcVersionError unless the installed aiortc/aioice are the pinned versions."""
    for dist, pinned in PINNED.items():
        version = (installed or {}).get(dist) or metadata.version(dist)
        if version != pinned:
            raise AiortcVersionError(
                f"peers need {dist}=={pinned} (Rebound patches its private internals), "
                f"found {version}: reinstall from requirements/ or port peers.aiortc_internals"
            )


check_versions()

# isort: split
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver  # noqa: E402
from aiortc.rtcicetransport import RTCIceTransport  # noqa: E402

_SENDER_ENCODER = "_RTCRtpSender__encoder"
RECEIVER_STATE = (
    "codecs",
    "decoder_error",
    "decoder_queue",
    "decoder_thread",
    "remote_streams",
    "rtcp_ssrc",
    "rtx_ssrc",
    "timestamp_mapper",
)
"""RTCRtpReceiver's private attributes the replacement packet handler reads."""


def _mangled(cls: type, name: str) -> str:
    return f"_{cls.__name__}__{name}"


def _require(obj: object, attribute: str) -> None:
    if not hasattr(obj, attribute):
        raise AiortcVersionError(
            f"{type(obj).__name__} has no {attribute}: aiortc's internals changed"
        )


def set_encoder(sender: RTCRtpSender, encoder: object) -> None:
    """Make `sender` encode with `encoder` (it creates its own only when it has none)."""
    _require(sender, _SENDER_ENCODER)
    setattr(sender, _SENDER_ENCODER, encoder)


def encoder_of(sender: RTCRtpSender) -> object | None:
    """The encoder `sender` uses now (None before the first frame and after the track ends)."""
    return getattr(sender, _SENDER_ENCODER, None)


def negotiated_mime_types(transceiver: RTCRtpTransceiver) -> list[str]:
    """MIME types of the codecs `transceiver` negotiated, the one it sends with first."""
    return [str(codec.mimeType) for codec in getattr(transceiver, "_codecs", None) or []]


def nominated_pair(ice: RTCIceTransport) -> Any | None:
    """aioice's selected CandidatePair of component 1 (RTP, bundled), or None."""
    connection = getattr(ice, "_connection", None)
    nominated = getattr(connection, "_nominated", None)
    if not isinstance(nominated, dict):
        return None
    return nominated.get(1)


def receiver_state(receiver: RTCRtpReceiver) -> dict[str, Any]:
    """The receiver's private state named in RECEIVER_STATE, by short name."""
    state = {}
    for name in RECEIVER_STATE:
        attribute = _mangled(RTCRtpReceiver, name)
        _require(receiver, attribute)
        state[name] = getattr(receiver, attribute)
    return state


def receiver_private(receiver: RTCRtpReceiver, name: str) -> Any:
    """The current value of one of the receiver's private attributes in RECEIVER_STATE
    (for those aiortc replaces rather than mutates: the decoder thread, the RTCP SSRC)."""
    assert name in RECEIVER_STATE
    return getattr(receiver, _mangled(RTCRtpReceiver, name))


def decoder_thread_running(receiver: RTCRtpReceiver) -> bool:
    """True while the receiver's decoder thread takes frames (it is None once stopped)."""
    return receiver_private(receiver, "decoder_thread") is not None
