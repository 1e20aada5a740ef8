"""NetworkPolicy as iptables rules in a pod's network namespace (pure).

The process node has no CNI, so this is its network plugin's policy half: for one pod it
decides, from every NetworkPolicy, pod and namespace, which traffic that pod may receive and
send, and renders it as an `iptables-restore` filter table for the pod's own namespace.

Semantics (networking.k8s.io/v1): a pod is isolated for ingress (egress) when a policy of
its namespace selects it with that policy type; it then accepts only what one of those
policies' rules allows (the union). A rule without peers allows any address, without ports
any port. A peer is an `ipBlock` (cidr minus `except`), or pods chosen by `podSelector`
and/or `namespaceSelector` (a podSelector alone means the policy's own namespace). Replies
to allowed connections pass (conntrack), as with every CNI. Not supported, and refusing
rather than allowing: named ports (a rule naming one matches nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

INGRESS = "Ingress"
EGRESS = "Egress"
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


@dataclass(frozen=True)
class PodAddress:
    """What policies need to know of a pod: where it is, its labels, its address."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    ip: str | None


@dataclass(frozen=True)
class Allow:
    """One allowed flow: from/to `cidrs` (None: anywhere, minus `excluded`), over
    `protocol` (None: any) to `ports` (a first..last range; None: any port)."""

    cidrs: tuple[str, ...] | None
    excluded: tuple[str, ...] = ()
    protocol: str | None = None
    ports: tuple[int, int] | None = None


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector's verdict on `labels` (an empty selector selects everything)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = set(expression.get("values") or [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def policy_types(spec: Mapping[str, Any]) -> set[str]:
    """The directions a policy isolates: its policyTypes, else Ingress (+ Egress when it
    has egress rules), as the API server defaults them."""
    declared = spec.get("policyTypes")
    if declared:
        return set(declared)
    return {INGRESS, EGRESS} if spec.get("egress") else {INGRESS}


def _peer_addresses(
    peer: Mapping[str, Any],
    policy_namespace: str,
    pods: Sequence[PodAddress],
    namespaces: Mapping[str, Mapping[str, str]],
) -> Allow | list[str]:
    block = peer.get("ipBlock")
    if block is not None:
        return Allow(cidrs=(str(block["cidr"]),), excluded=tuple(block.get("except") or ()))
    pod_selector = peer.get("podSelector")
    namespace_selector = peer.get("namespaceSelector")
    chosen = []
    for pod in pods:
        if pod.ip is None:
            continue
        if namespace_selector is None:
            in_scope = pod.namespace == policy_namespace
        else:
            in_scope = selects(namespace_selector, namespaces.get(pod.namespace, {}))
        if in_scope and (pod_selector is None or selects(pod_selector, pod.labels)):
            chosen.append(f"{pod.ip}/32")
    return chosen


def _ports(rule: Mapping[str, Any]) -> list[tuple[str | None, tuple[int, int] | None]] | None:
    """(protocol, port range) pairs of a rule; None when it names only named ports."""
    entries = rule.get("ports")
    if not entries:
        return [(None, None)]
    result: list[tuple[str | None, tuple[int, int] | None]] = []
    for entry in entries:
        protocol = str(entry.get("protocol") or "TCP")
        port = entry.get("port")
        if port is None:
            result.append((protocol, None))
        elif isinstance(port, int):
            result.append((protocol, (port, int(entry.get("endPort") or port))))
    return result or None


def allowed(
    pod: PodAddress,
    policies: Iterable[Mapping[str, Any]],
    pods: Sequence[PodAddress],
    namespaces: Mapping[str, Mapping[str, str]],
    direction: str,
) -> list[Allow] | None:
    """What `pod` may receive (INGRESS) or send (EGRESS); None when no policy isolates it."""
    isolated = False
    allows: list[Allow] = []
    key, peers_key = ("ingress", "from") if direction == INGRESS else ("egress", "to")
    for policy in policies:
        meta = policy.get("metadata") or {}
        spec = policy.get("spec") or {}
        if meta.get("namespace") != pod.namespace:
            continue
        if not selects(spec.get("podSelector"), pod.labels):
            continue
        if direction not in policy_types(spec):
            continue
        isolated = True
        for rule in spec.get(key) or []:
            ports = _ports(rule)
            if ports is None:
                continue
            peers = rule.get(peers_key)
            targets: list[Allow] = []
            if not peers:
                targets.append(Allow(cidrs=None))
            for peer in peers or []:
                found = _peer_addresses(peer, str(meta.get("namespace")), pods, namespaces)
                if isinstance(found, Allow):
                    targets.append(found)
                elif found:
                    targets.append(Allow(cidrs=tuple(found)))
            for target in targets:
                for protocol, port_range in ports:
                    allows.append(Allow(target.cidrs, target.excluded, protocol, port_range))
    return allows if isolated else None


def _match(allow: Allow, address_flag: str, cidr: str | None) -> str:
    parts = []
    if cidr is not None:
        parts.append(f"{address_flag} {cidr}")
    if allow.protocol is not None:
        proto = PROTOCOLS.get(allow.protocol.upper())
        if proto is None:
            return ""
        parts.append(f"-p {proto}")
        if allow.ports is not None:
            first, last = allow.ports
            parts.append(f"--dport {first}" if first == last else f"--dport {first}:{last}")
    return " ".join(parts)


def _chain_rules(
    chain: str, address_flag: str, allows: list[Allow] | None
) -> tuple[list[str], list[str]]:
    """(extra chains to declare, rules) of one direction; `except` blocks get a chain each
    that RETURNs for an excluded address and ACCEPTs the rest."""
    interface = "-i" if chain == "INPUT" else "-o"
    lines = [
        f"-A {chain} {interface} lo -j ACCEPT",
        f"-A {chain} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    ]
    chains: list[str] = []
    if allows is None:
        return chains, lines
    for index, allow in enumerate(allows):
        for cidr in allow.cidrs if allow.cidrs is not None else (None,):
            match = _match(allow, address_flag, cidr)
            if allow.protocol is not None and not match:
                continue  # a protocol iptables cannot name: allows nothing
            target = "ACCEPT"
            if allow.excluded:
                target = f"RB-{chain[0]}{index}"
                if target not in chains:
                    chains.append(target)
                    lines.extend(
                        f"-A {target} {address_flag} {e} -j RETURN" for e in allow.excluded
                    )
                    lines.append(f"-A {target} -j ACCEPT")
            lines.append(" ".join(part for part in (f"-A {chain}", match, f"-j {target}") if part))
    lines.append(f"-A {chain} -j DROP")
    return chains, lines


def ruleset(ingress: list[Allow] | None, egress: list[Allow] | None) -> str:
    """An `iptables-restore` filter table for a pod's namespace (None: that direction open)."""
    in_chains, in_rules = _chain_rules("INPUT", "-s", ingress)
    out_chains, out_rules = _chain_rules("OUTPUT", "-d", egress)
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines += [f":{name} - [0:0]" for name in in_chains + out_chains]
    lines += in_rules + out_rules
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"
