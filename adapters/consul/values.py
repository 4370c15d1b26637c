"""Helm values for the `consul` chart: a single-datacenter service mesh.

Connect injection is on, and namespace-scoped as Consul documents it: the injector webhook's
`connectInject.namespaceSelector` selects namespaces labelled
``consul.hashicorp.com/connect-inject=true`` and `connectInject.default` injects every pod there
(a pod opts out with the annotation ``consul.hashicorp.com/connect-inject: "false"``). The
server count comes from a parameter; the rest are the chart's defaults for one cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.kit import (
    InjectionMarker,
    MarkerField,
    PlanContext,
    parse_integer,
)

INJECTION = InjectionMarker(
    field=MarkerField.LABEL, key="consul.hashicorp.com/connect-inject", value="true"
)
SERVER_REPLICAS_PARAMETER = "server-replicas"
DEFAULT_SERVER_REPLICAS = "1"
MAX_SERVER_REPLICAS = 7


async def chart_values(ctx: PlanContext) -> Mapping[str, Any]:
    """Service mesh on, injection by namespace label, ``server-replicas`` servers."""
    replicas = parse_integer(
        ctx.parameters.get(SERVER_REPLICAS_PARAMETER) or DEFAULT_SERVER_REPLICAS,
        minimum=1,
        maximum=MAX_SERVER_REPLICAS,
    )
    selector = f'matchLabels:\n  {INJECTION.key}: "{INJECTION.value}"\n'
    return {
        "global": {"name": "consul", "datacenter": "dc1"},
        "server": {"replicas": replicas, "bootstrapExpect": replicas},
        "connectInject": {"enabled": True, "default": True, "namespaceSelector": selector},
    }
