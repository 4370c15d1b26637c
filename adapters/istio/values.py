"""Helm values for Istio's charts under each install profile.

Istio's charts ship their profiles as `files/profile-<name>.yaml` and select one through the
`profile` value, so "demo" is passed through. "default" is the charts' own defaults, and
"minimal" is the same control plane without gateways (as in `istioctl`'s profiles).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.kit import (
    PlanContext,
)

PROFILES: tuple[str, ...] = ("minimal", "default", "demo")
DEFAULT_PROFILE = "default"
CHART_PROFILES: frozenset[str] = frozenset({"demo"})
"""Profiles the charts know by name; the others are the charts' defaults."""


def profile_of(ctx: PlanContext) -> str:
    """The requested profile (the runner has checked it against `PROFILES`)."""
    return ctx.parameters.get("profile") or DEFAULT_PROFILE


def _common(ctx: PlanContext) -> dict[str, Any]:
    values: dict[str, Any] = {"global": {"istioNamespace": ctx.namespace}}
    profile = profile_of(ctx)
    if profile in CHART_PROFILES:
        values["profile"] = profile
    return values


VALIDATION_FAILURE_POLICY = "Fail"
"""The config validators' failurePolicy, set explicitly. Left unset, the charts render `Ignore`
on install and nothing on upgrade, and istiod's webhook controller patches it to `Fail` once its
endpoint answers: a server-side apply of the rendered objects would then flip it back and forth
(Istio's values recommend `Fail` for server-side apply tools). With `Fail`, while istiod cannot
be reached Istio config is refused, and the adapter names the webhook (WEBHOOK_UNAVAILABLE)."""


def _validation() -> dict[str, Any]:
    return {"base": {"validationFailurePolicy": VALIDATION_FAILURE_POLICY}}


async def base_values(ctx: PlanContext) -> Mapping[str, Any]:
    """CRDs and the default-revision validator, pointed at the control plane namespace."""
    return {**_common(ctx), **_validation()}


async def istiod_values(ctx: PlanContext) -> Mapping[str, Any]:
    """The control plane under the requested profile (and its revision's validator)."""
    return {**_common(ctx), **_validation()}


async def ingress_gateway_values(ctx: PlanContext) -> Mapping[str, Any]:
    """The ingress gateway: a LoadBalancer Service, as Istio's default and demo profiles."""
    return _common(ctx)


async def egress_gateway_values(ctx: PlanContext) -> Mapping[str, Any]:
    """The demo profile's egress gateway: cluster-internal only."""
    return {**_common(ctx), "service": {"type": "ClusterIP"}}


async def has_gateways(ctx: PlanContext) -> bool:
    """Every profile but minimal runs an ingress gateway."""
    return profile_of(ctx) != "minimal"


async def has_egress_gateway(ctx: PlanContext) -> bool:
    """Only the demo profile adds an egress gateway."""
    return profile_of(ctx) == "demo"
