"""Istio policies and routes built from request parameters.

mTLS modes and deny-all follow Istio's security tasks; the canary and fault routes follow the
Bookinfo traffic-management tasks (reviews split by weight; ratings with injected delay/abort).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from adapters.kit import (
    KubeObject,
    PlanContext,
    namespaced_object,
    parse_integer,
)

NETWORKING = "networking.istio.io/v1"
SECURITY = "security.istio.io/v1"

REVIEWS_VERSIONS: tuple[str, ...] = ("v1", "v2", "v3")
WEIGHT_PARAMETERS: dict[str, str] = {v: f"reviews-{v}-weight" for v in REVIEWS_VERSIONS}
DEFAULT_WEIGHTS: dict[str, str] = {"v1": "50", "v2": "0", "v3": "50"}
PERCENT_MAX = 100
DELAY_MS_MAX = 600_000
"""Longest injected delay (10 minutes): longer is an outage, not a fault test."""


def peer_authentication(mode: str) -> Callable[[PlanContext], Awaitable[Sequence[KubeObject]]]:
    """Namespace-wide mTLS mode (STRICT, PERMISSIVE or DISABLE)."""

    async def build(ctx: PlanContext) -> Sequence[KubeObject]:
        return [
            namespaced_object(
                api_version=SECURITY,
                kind="PeerAuthentication",
                name="default",
                namespace=ctx.namespace,
                spec={"mtls": {"mode": mode}},
            )
        ]

    return build


async def deny_all(ctx: PlanContext) -> Sequence[KubeObject]:
    """An AuthorizationPolicy with an empty spec: denies every request in the namespace."""
    return [
        namespaced_object(
            api_version=SECURITY,
            kind="AuthorizationPolicy",
            name="deny-all",
            namespace=ctx.namespace,
            spec={},
        )
    ]


def canary_weights_problems(parameters: Mapping[str, str]) -> Sequence[tuple[str, str]]:
    """The three reviews weights must be integers 0..100 that sum to 100."""
    weights: dict[str, int] = {}
    for version, name in WEIGHT_PARAMETERS.items():
        try:
            weights[version] = parse_integer(
                parameters.get(name, DEFAULT_WEIGHTS[version]), minimum=0, maximum=PERCENT_MAX
            )
        except ValueError as exc:
            return [(f"parameters.{name}", str(exc))]
    total = sum(weights.values())
    if total != 100:
        listed = ", ".join(f"{WEIGHT_PARAMETERS[v]}={w}" for v, w in weights.items())
        return [
            (
                "parameters",
                f"reviews weights must sum to 100, got {total} ({listed}); adjust them so "
                "they add up to 100",
            )
        ]
    return []


async def reviews_canary(ctx: PlanContext) -> Sequence[KubeObject]:
    """The reviews DestinationRule (one subset per version) and the weighted VirtualService."""
    weights = {
        v: parse_integer(
            ctx.parameters.get(WEIGHT_PARAMETERS[v], DEFAULT_WEIGHTS[v]),
            minimum=0,
            maximum=PERCENT_MAX,
        )
        for v in REVIEWS_VERSIONS
    }
    routes = [
        {"destination": {"host": "reviews", "subset": version}, "weight": weight}
        for version, weight in weights.items()
        if weight > 0
    ]
    subsets = [{"name": v, "labels": {"version": v}} for v in REVIEWS_VERSIONS]
    return [
        namespaced_object(
            api_version=NETWORKING,
            kind="DestinationRule",
            name="reviews",
            namespace=ctx.namespace,
            spec={"host": "reviews", "subsets": subsets},
        ),
        namespaced_object(
            api_version=NETWORKING,
            kind="VirtualService",
            name="reviews",
            namespace=ctx.namespace,
            spec={"hosts": ["reviews"], "http": [{"route": routes}]},
        ),
    ]


async def ratings_fault(ctx: PlanContext) -> Sequence[KubeObject]:
    """The ratings VirtualService with a fixed delay and/or an HTTP 500 abort on some requests."""
    delay_ms = parse_integer(ctx.parameters.get("delay-ms") or "0", minimum=0, maximum=DELAY_MS_MAX)
    abort_percent = parse_integer(
        ctx.parameters.get("abort-percent") or "0", minimum=0, maximum=PERCENT_MAX
    )
    fault: dict[str, Any] = {}
    if delay_ms > 0:
        fault["delay"] = {"fixedDelay": f"{delay_ms}ms", "percentage": {"value": 100.0}}
    if abort_percent > 0:
        fault["abort"] = {"httpStatus": 500, "percentage": {"value": float(abort_percent)}}
    route: dict[str, Any] = {"route": [{"destination": {"host": "ratings"}}]}
    if fault:
        route = {"fault": fault, **route}
    return [
        namespaced_object(
            api_version=NETWORKING,
            kind="VirtualService",
            name="ratings",
            namespace=ctx.namespace,
            spec={"hosts": ["ratings"], "http": [route]},
        )
    ]
