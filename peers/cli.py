"""What both peers' command lines share: parsing, one-line errors, exit codes, signals."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import NoReturn

from aiortc import RTCConfiguration, RTCIceServer
from pydantic import TypeAdapter, ValidationError

from peers import signaling
from peers.config import IceServer

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130

_ICE_SERVERS = TypeAdapter(list[IceServer])


class UsageError(Exception):
    """A bad command-line value; the message is the whole user-facing line."""


class PeerArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one `prog: error: ...` line and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def new_parser(prog: str, description: str, role: str) -> PeerArgumentParser:
    """A peer's parser with its optional positional role (`offer` or `answer`), as in the seed."""
    parser = PeerArgumentParser(prog=prog, description=description)
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
        type=float,
        default=30.0,
        metavar="S",
        help="give up if the other peer has not connected within S seconds (default 30)",
    )
    parser.add_argument(
        "--ice-servers",
        default="[]",
        metavar="JSON",
        help='STUN/TURN servers, e.g. \'[{"urls": ["stun:stun.example:3478"]}]\' (default: none)',
    )


def validate_common_arguments(args: argparse.Namespace) -> None:
    """Check the flags both peers share (signaling, timeout, ICE servers); UsageError if bad."""
    problem = signaling.validate_arguments(args)
    if problem:
        raise UsageError(problem)
    if args.connect_timeout <= 0:
        raise UsageError(f"--connect-timeout {args.connect_timeout:g} must be > 0")
    parse_ice_servers(args.ice_servers)


def parse_ice_servers(text: str) -> list[IceServer]:
    """The `--ice-servers` JSON as validated models; UsageError on anything else."""
    try:
        return _ICE_SERVERS.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"--ice-servers: {where}: {first['msg']}".replace(": :", ":")) from None


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


def configure_logging(verbose: bool) -> None:
    """Our messages on stderr; aiortc/aioice stay quiet unless something is wrong."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    for noisy in ("aiortc", "aioice", "kubernetes", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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
