"""Signaling transports behind one small interface (see `base.Signaling`)."""

from __future__ import annotations

import argparse

from peers.signaling.base import BYE, Role, Signaling, SignalingError
from peers.signaling.tcp import TcpSignaling

__all__ = ["BYE", "Role", "Signaling", "SignalingError", "add_arguments", "create"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1234


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Signaling flags shared by both peers (names as in aiortc's examples)."""
    group = parser.add_argument_group("signaling")
    group.add_argument(
        "--signaling",
        "-s",
        choices=["tcp-socket", "configmap"],
        default="tcp-socket",
        help="signaling transport (default: tcp-socket)",
    )
    group.add_argument("--signaling-host", default=DEFAULT_HOST, help="tcp-socket host")
    group.add_argument("--signaling-port", type=int, default=DEFAULT_PORT, help="tcp-socket port")
    group.add_argument(
        "--configmap",
        metavar="NAME",
        help="configmap signaling: this peer's own ConfigMap (the only one it writes)",
    )
    group.add_argument(
        "--peer-configmap",
        metavar="NAME",
        help="configmap signaling: the other peer's ConfigMap (only read and watched)",
    )
    group.add_argument("--namespace", help="configmap signaling: the ConfigMaps' namespace")
    group.add_argument("--kubeconfig", help="configmap signaling outside a cluster")


def validate_arguments(args: argparse.Namespace) -> str | None:
    """A one-line problem with the signaling flags, or None."""
    if args.signaling == "tcp-socket" and not 0 < args.signaling_port < 65536:
        return f"--signaling-port {args.signaling_port} is not a TCP port (1-65535)"
    if args.signaling == "configmap" and not (
        args.configmap and args.peer_configmap and args.namespace
    ):
        return (
            "--signaling configmap needs --configmap NAME (this peer's), "
            "--peer-configmap NAME (the other peer's) and --namespace NS"
        )
    if args.signaling == "configmap" and args.configmap == args.peer_configmap:
        return "--configmap and --peer-configmap must name different ConfigMaps"
    return None


def create(role: Role, args: argparse.Namespace) -> Signaling:
    """The signaling transport the flags ask for."""
    if args.signaling == "configmap":
        from peers.signaling import configmap

        transport: Signaling = configmap.from_args(
            role, args.configmap, args.peer_configmap, args.namespace, args.kubeconfig
        )
        return transport
    return TcpSignaling(role, args.signaling_host, args.signaling_port)
