"""Signaling through Kubernetes ConfigMaps, one per peer (docs/CONTRACTS.md).

Each peer writes only its own ConfigMap (`--configmap`, e.g. `<session>-server-signaling`)
and reads the other's (`--peer-configmap`). The server merge-patches `data.offer` into its
own and watches the client's for `data.answer`; the client watches the server's for
`data.offer` and patches `data.answer` into its own. The server also publishes `data.metrics`
(live), `data.summary` (final) and `data.series` (its per-frame series, downsampled to at most
200 kB, at the end), and each peer may write `data.error` into its own. So a
peer needs get/watch/patch on its own ConfigMap and get/watch on the other's, nothing else
(a watch on a named object is a watch with a `metadata.name` field selector, which RBAC
`resourceNames` allows), and no client can write the server's results.

The `kubernetes` client is synchronous: every call runs in a worker thread, and the watch
runs in a daemon thread that hands matching values to the event loop, so nothing blocks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from typing import Any, cast

from aiortc import RTCSessionDescription
from aiortc.contrib.signaling import object_from_string, object_to_string
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from peers.signaling.base import BYE, Role, SignalingError, SignalingMessage

WATCH_READ_TIMEOUT_S = 5.0
MAX_DESCRIPTION = 256 * 1024
"""Characters of an offer/answer accepted from the other peer (a real SDP is a few kB)."""
RETRY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0)
_WANTED: dict[Role, str] = {"offer": "answer", "answer": "offer"}
_MINE: dict[Role, str] = {"offer": "offer", "answer": "answer"}


def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster service account if present, else `kubeconfig` / $KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        pass
    try:
        return cast(client.ApiClient, config.new_client_from_config(config_file=kubeconfig))
    except (config.ConfigException, OSError) as exc:
        raise SignalingError(f"no Kubernetes credentials: {exc}") from None


def _describe(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return str(exc) or type(exc).__name__


class ConfigMapSignaling:
    """One peer's end of ConfigMap signaling."""

    def __init__(
        self,
        role: Role,
        name: str,
        peer_name: str,
        namespace: str,
        api: client.ApiClient | None = None,
        *,
        kubeconfig: str | None = None,
    ) -> None:
        self.role: Role = role
        self.name = name
        self.peer_name = peer_name
        self.namespace = namespace
        self._api_client = api
        self._kubeconfig = kubeconfig
        self._core: client.CoreV1Api | None = None
        self._closed = threading.Event()
        self._watches: list[watch.Watch] = []

    @property
    def where(self) -> str:
        """namespace/name of our own ConfigMap, for messages."""
        return f"{self.namespace}/{self.name}"

    @property
    def peer_where(self) -> str:
        """namespace/name of the other peer's ConfigMap, for messages."""
        return f"{self.namespace}/{self.peer_name}"

    def _api(self) -> client.CoreV1Api:
        if self._core is None:
            self._core = client.CoreV1Api(self._api_client or api_client(self._kubeconfig))
        return self._core

    def _read_data(self, name: str) -> dict[str, str]:
        where = f"{self.namespace}/{name}"
        try:
            cm = self._api().read_namespaced_config_map(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise SignalingError(f"signaling ConfigMap {where} does not exist") from None
            if exc.status in (401, 403):
                raise SignalingError(
                    f"not allowed to read signaling ConfigMap {where} ({_describe(exc)})"
                ) from None
            raise
        return dict(cm.data or {})

    def _patch(self, data: dict[str, str]) -> None:
        delays = iter(RETRY_BACKOFF_S)
        while True:
            try:
                self._api().patch_namespaced_config_map(self.name, self.namespace, {"data": data})
                return
            except ApiException as exc:
                if exc.status in (401, 403, 404):
                    raise SignalingError(
                        f"cannot write signaling ConfigMap {self.where} ({_describe(exc)})"
                    ) from None
                delay = next(delays, None)
                if delay is None or (exc.status < 500 and exc.status != 429):
                    raise SignalingError(f"cannot write {self.where}: {_describe(exc)}") from None
                time.sleep(delay)
            except HTTPError as exc:
                delay = next(delays, None)
                if delay is None:
                    raise SignalingError(f"cannot write {self.where}: {_describe(exc)}") from None
                time.sleep(delay)

    async def connect(self) -> None:
        """Check that both ConfigMaps exist and are readable (SignalingError otherwise)."""
        await asyncio.to_thread(self._read_data, self.name)
        await asyncio.to_thread(self._read_data, self.peer_name)

    async def send(self, message: SignalingMessage) -> None:
        """Write our description under `offer` (server) or `answer` (client)."""
        if message is BYE:
            return  # the peers' own data channel and exit codes say when a session ends
        text = object_to_string(message)  # type: ignore[arg-type]
        await asyncio.to_thread(self._patch, {_MINE[self.role]: text})

    def _wait_for(self, key: str) -> str | None:
        """Blocking: return the other peer's data[key] once present (get, then watch;
        re-watch on expiry)."""
        name = self.peer_name
        field_selector = f"metadata.name={name}"
        failures = 0
        while not self._closed.is_set():
            try:
                data = self._read_data(name)
                if key in data:
                    return data[key]
                stream = watch.Watch()
                self._watches.append(stream)
                try:
                    for event in stream.stream(
                        self._api().list_namespaced_config_map,
                        self.namespace,
                        field_selector=field_selector,
                        _request_timeout=(5.0, WATCH_READ_TIMEOUT_S),
                    ):
                        if self._closed.is_set():
                            return None
                        obj = event.get("object")
                        if getattr(getattr(obj, "metadata", None), "name", None) != name:
                            continue  # servers that ignore the field selector
                        if event.get("type") == "DELETED":
                            raise SignalingError(
                                f"signaling ConfigMap {self.peer_where} was deleted"
                            )
                        value = (getattr(obj, "data", None) or {}).get(key)
                        if value is not None:
                            return str(value)
                finally:
                    stream.stop()
                    self._watches.remove(stream)
                failures = 0
            except SignalingError:
                raise
            except (ApiException, HTTPError, OSError) as exc:
                if isinstance(exc, ApiException) and exc.status in (401, 403):
                    raise SignalingError(
                        f"not allowed to watch {self.peer_where} ({_describe(exc)})"
                    ) from None
                # Read timeouts end a quiet watch; 410 Gone and transient errors re-watch.
                failures += 1
                self._closed.wait(RETRY_BACKOFF_S[min(failures, len(RETRY_BACKOFF_S)) - 1])
        return None

    async def receive(self) -> SignalingMessage | None:
        """Wait for the other peer's description."""
        key = _WANTED[self.role]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()

        def run() -> None:
            try:
                result: Any = self._wait_for(key)
            except BaseException as exc:  # handed to the loop, never lost in the thread
                result = exc
            if not loop.is_closed():
                loop.call_soon_threadsafe(_settle, future, result)

        threading.Thread(target=run, name=f"watch-{key}", daemon=True).start()
        text = await future
        if text is None:
            return None
        if len(text) > MAX_DESCRIPTION:
            raise SignalingError(
                f"malformed {key} in {self.peer_where}: {len(text)} characters "
                f"(at most {MAX_DESCRIPTION})"
            )
        try:
            message = object_from_string(text)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            why = str(exc)[:200] or type(exc).__name__
            raise SignalingError(f"malformed {key} in {self.peer_where}: {why}") from None
        if not isinstance(message, RTCSessionDescription) or message.type != key:
            raise SignalingError(f"malformed {key} in {self.peer_where}: not an SDP {key}")
        return message

    async def publish_metrics(self, metrics: dict[str, Any], *, final: bool) -> None:
        """Write `metrics` (and `summary` when final) as JSON for the operator."""
        text = json.dumps(metrics, allow_nan=False)
        data = {"metrics": text, **({"summary": text} if final else {})}
        await asyncio.to_thread(self._patch, data)

    async def publish_series(self, text: str) -> None:
        """Write the downsampled per-frame series into our own ConfigMap (`data.series`):
        only the server's ServiceAccount may write it, so the client cannot forge it."""
        await asyncio.to_thread(self._patch, {"series": text})

    async def publish_error(self, message: str) -> None:
        """Write a one-line error (into our own ConfigMap) for the operator's status."""
        role = "server" if self.role == "offer" else "client"
        await asyncio.to_thread(self._patch, {"error": f"{role}: {message}"})

    async def close(self) -> None:
        """Stop any watch (its thread exits at its next read timeout at the latest)."""
        self._closed.set()
        for stream in list(self._watches):
            with contextlib.suppress(Exception):
                stream.stop()


def _settle(future: asyncio.Future[str | None], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def from_args(
    role: Role, name: str, peer_name: str, namespace: str, kubeconfig: str | None
) -> ConfigMapSignaling:
    """ConfigMap signaling as the peers' `--signaling configmap` flags describe it."""
    return ConfigMapSignaling(role, name, peer_name, namespace, kubeconfig=kubeconfig)
