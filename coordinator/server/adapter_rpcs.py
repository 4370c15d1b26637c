"""The coordinator's adapter RPCs: list, register and deregister adapter replicas."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import grpc

from coordinator.server import messages
from coordinator.server.replicas import RegistrationError, Replica, Source
from coordinator.server.rpc_group import RpcGroup, abort
from meshplane.coordinator.v1 import coordinator_pb2 as pb
from serving.build_info import package_version
from serving.input_quoting import quoted

__all__ = ["AdapterRpcs"]

_HOST_NAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\.?"
)


def address_problem(address: str) -> str | None:
    """Why ``address`` cannot be registered over the API, or None for a plain ``host:port``.

    Only a DNS name or an IP literal (IPv6 in brackets) with a port: resolver schemes (``unix:``
    reaches any socket on the coordinator's host, ``dns://server/`` picks the resolver,
    ``ipv4:a,b`` lists several peers) are for the operator's own ``--adapter`` flags.
    """
    host, colon, port = address.rpartition(":")
    if colon and port.isascii() and port.isdigit() and 0 < int(port) < 65536:
        if host.startswith("[") and host.endswith("]"):
            try:
                ipaddress.IPv6Address(host[1:-1])
            except ValueError:
                pass
            else:
                return None
        elif len(host) <= 253 and _HOST_NAME.fullmatch(host):
            return None
    return (
        f"address: {quoted(address, 80)} is not host:port; give the adapter's host name or IP "
        "and port (for example adapter.mesh.svc:10000 or [fd00::7]:10000). Resolver schemes "
        "such as unix: and dns: are refused here; configure them with the coordinator's "
        "--adapter flag"
    )


class AdapterRpcs(RpcGroup):
    """ListAdapters, RegisterAdapter, DeregisterAdapter."""

    async def ListAdapters(
        self, request: pb.ListAdaptersRequest, context: Any
    ) -> pb.ListAdaptersResponse:
        """Every replica by mesh, with health, version, last error and event progress."""
        replicas = self._parts.registry.replicas()
        feeds = await self._feeds(replicas)
        return pb.ListAdaptersResponse(
            adapters=messages.adapters_to_pb(replicas, feeds=feeds),
            coordinator_version=package_version(),
        )

    async def RegisterAdapter(
        self, request: pb.RegisterAdapterRequest, context: Any
    ) -> pb.RegisterAdapterResponse:
        """Contact the replica, check its mesh, add it and start following it."""
        address = request.address.strip()
        if not address:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "address is required")
        problem = address_problem(address)
        if problem is not None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            replica = await self._parts.registry.register(
                address,
                mesh=request.mesh,
                seconds=self._parts.router.timeout(context.time_remaining()),
            )
        except RegistrationError as exc:
            await abort(context, exc.code, exc.message)
        return pb.RegisterAdapterResponse(adapter=await self._adapter(replica.mesh))

    async def DeregisterAdapter(
        self, request: pb.DeregisterAdapterRequest, context: Any
    ) -> pb.DeregisterAdapterResponse:
        """Remove a dynamically registered replica (static and discovered ones stay)."""
        registry = self._parts.registry
        address = request.address.strip()
        replica = registry.get(address)
        if replica is None:
            known = ", ".join(r.address for r in registry.replicas()) or "none"
            await abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"no adapter replica registered at {quoted(address)}; known: {known}",
            )
        if replica.source is not Source.DYNAMIC:
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{address} was added by {replica.source.value} configuration, not "
                "RegisterAdapter; remove it there",
            )
        await registry.remove(address)
        return pb.DeregisterAdapterResponse()

    async def _adapter(self, mesh: str) -> pb.Adapter:
        replicas = self._parts.registry.replicas(mesh)
        feeds = await self._feeds(replicas)
        adapters = messages.adapters_to_pb(replicas, feeds=feeds)
        return adapters[0] if adapters else pb.Adapter(mesh=mesh)

    async def _feeds(self, replicas: list[Replica]) -> dict[str, messages.FeedView]:
        """Per replica: the stored position of its event stream and the follower's problems."""
        feed_status = self._parts.feed_status
        views: dict[str, messages.FeedView] = {}
        for replica in replicas:
            sequence = 0
            if replica.event_stream_id:
                source = f"{replica.mesh}/{replica.event_stream_id}"
                sequence = await self._parts.store.last_sequence(source)
            status = feed_status(replica.address) if feed_status else None
            views[replica.address] = messages.FeedView(
                last_sequence=sequence,
                error=status.feed_error if status else "",
                skipped_events=status.skipped_events if status else 0,
            )
        return views
