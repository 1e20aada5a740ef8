"""What both peers' command lines share: parsing, one-line errors, exit codes, signals."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Annotated, NoReturn

from aiortc import RTCConfiguration, RTCIceServer
from pydantic import Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from peers import signaling
from peers.config import IceServer

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130

MAX_ICE_SERVERS = 8
MAX_CONNECT_TIMEOUT_S = 86_400.0
_ICE_SERVERS = TypeAdapter(Annotated[list[IceServer], Field(max_length=MAX_ICE_SERVERS)])


class UsageError(Exception):
    """A bad command-line value; the message is the whole user-facing line."""


class PeerArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one `prog: error: ...` line and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def number(
    low: float | None = None, high: float | None = None, *, above: bool = False
) -> Callable[[str], float]:
    """An argparse type: a finite float in [low, high], or in (low, high] when `above`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        too_low = low is not None and (value <= low if above else value < low)
        if too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is not {describe_range(low, high, above)}")
        return value

    return parse


def port_number(text: str) -> int:
    """An argparse type: a TCP port 0-65535 (0: let the system pick one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0-65535)")
    return value


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def describe_range(low: float | None, high: float | None, above: bool = False) -> str:
    """'> 0 and <= 86400', 'between 1 and 120', '>= 0', ... for help and errors."""
    parts = []
    if low is not None:
        parts.append(f"{'>' if above else '>='} {_num(low)}")
    if high is not None:
        parts.append(f"<= {_num(high)}")
    if low is not None and high is not None and not above:
        return f"between {_num(low)} and {_num(high)}"
    return " and ".join(parts) or "any number"


def field_range(field: FieldInfo) -> str:
    """The bounds of a pydantic field, e.g. 'between 1 and 120', for --help."""
    low = high = None
    for constraint in field.metadata:
        low = getattr(constraint, "ge", low)
        high = getattr(constraint, "le", high)
    return describe_range(low, high)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends '(default: X)' to every flag's help that does not already name its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        default = action.default
        if "default" in help_text or any(default is v for v in (None, False, argparse.SUPPRESS)):
            return help_text
        return super()._get_help_string(action)


def new_parser(prog: str, description: str, role: str) -> PeerArgumentParser:
    """A peer's parser with its optional positional role (`offer` or `answer`), as in the seed.

    --help shows every flag's default.
    """
    parser = PeerArgumentParser(
        prog=prog,
        description=description,
        formatter_class=HelpFormatter,
    )
    peer = "server" if role == "offer" else "client"
    parser.add_argument(
        "role",
        nargs="?",
        default=role,
        choices=[role],
        help=f"signaling role (the {peer} always {role}s)",
    )
    return parser


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags both peers take besides signaling."""
    parser.add_argument("--verbose", "-v", action="store_true", help="print every coordinate")
    parser.add_argument(
        "--connect-timeout",
        type=number(0, MAX_CONNECT_TIMEOUT_S, above=True),
        default=30.0,
        metavar="S",
        help="exit 3 if the other peer has not connected within S seconds of this peer "
        f"being ready ({describe_range(0, MAX_CONNECT_TIMEOUT_S, above=True)})",
    )
    parser.add_argument(
        "--ice-servers",
        default="[]",
        metavar="JSON",
        help='STUN/TURN servers, e.g. \'[{"urls": ["stun:stun.example:3478"]}]\'; at most '
        f"{MAX_ICE_SERVERS} servers of at most 8 stun:/stuns:/turn:/turns: URLs each "
        "(a credential given here is visible in ps)",
    )


def validate_common_arguments(args: argparse.Namespace) -> None:
    """Check the flags both peers share (signaling, ICE servers); UsageError if bad."""
    problem = signaling.validate_arguments(args)
    if problem:
        raise UsageError(problem)
    parse_ice_servers(args.ice_servers)


def parse_ice_servers(text: str) -> list[IceServer]:
    """The `--ice-servers` JSON as validated models; UsageError on anything else."""
    try:
        return _ICE_SERVERS.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise UsageError(f"--ice-servers: {where}: {message}".replace(": :", ":")) from None


ICE_CREDENTIAL_ENV = "REBOUND_ICE_CREDENTIAL_{index}"
"""Env var with the credential of `--ice-servers` entry `index` (the operator fills it from a
Secret); it wins over a `credential` in the JSON, which `ps` would show."""


def ice_credential(
    index: int, server: IceServer, environ: Mapping[str, str] = os.environ
) -> str | None:
    """Server `index`'s credential: `REBOUND_ICE_CREDENTIAL_<index>` if set, else the JSON's."""
    return environ.get(ICE_CREDENTIAL_ENV.format(index=index)) or server.credential


def rtc_configuration(
    servers: list[IceServer], environ: Mapping[str, str] = os.environ
) -> RTCConfiguration:
    """An RTCConfiguration with exactly these servers (never aiortc's public STUN default)."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s.urls, username=s.username, credential=ice_credential(i, s, environ))
            for i, s in enumerate(servers)
        ]
    )


def describe_validation_error(exc: ValidationError, flag_names: dict[str, str]) -> str:
    """One line naming the offending flag and value, from a pydantic error."""
    first = exc.errors()[0]
    loc = first["loc"]
    message = str(first["msg"]).removeprefix("Value error, ")
    if loc:
        flag = flag_names.get(str(loc[0]), f"--{str(loc[0]).replace('_', '-')}")
        return f"{flag} {first.get('input')!s}: {message}"
    return message


def check_output_path(flag: str, path: Path) -> None:
    """UsageError unless `path` can be written as a file (checked before any session)."""
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory")
    if not path.parent.is_dir():
        raise UsageError(f"{flag} {path}: directory does not exist")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag} {path}: file is not writable")
    if not path.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: directory is not writable")


def configure_logging(verbose: bool) -> None:
    """Our messages on stderr; aiortc/aioice stay quiet unless something is wrong."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    for noisy in ("aiortc", "aioice", "kubernetes", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # its retries end in our one line


def dump_json(obj: object) -> str:
    """Stable, human-diffable JSON."""
    return json.dumps(obj, indent=2, sort_keys=False, allow_nan=False)


def run(main: Callable[[asyncio.Event], Awaitable[int]], prog: str) -> int:
    """Run a peer's main coroutine; SIGINT/SIGTERM set the stop event instead of raising."""

    async def wrapper() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            return await main(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(wrapper())
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
