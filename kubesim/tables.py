"""Server-side printing: `Table` responses, so `kubectl get` shows the familiar columns.

Clients ask for them with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`. Custom
resources use their CRD's `additionalPrinterColumns` (simple JSONPath only).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from kubesim.objects import Obj

Column = tuple[str, str, int, Callable[[Obj], Any]]  # (name, type, priority, cell)


def wants_table(accept: str) -> bool:
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def _age(obj: Obj) -> str:
    stamp = obj.get("metadata", {}).get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    created = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    seconds = int((datetime.datetime.now(datetime.UTC) - created).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 3600 * 3:
        return f"{seconds // 60}m"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _status(obj: Obj) -> dict[str, Any]:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def _spec(obj: Obj) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _pod_ready(obj: Obj) -> str:
    statuses = _status(obj).get("containerStatuses") or []
    total = len(_spec(obj).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(obj: Obj) -> str:
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for s in _status(obj).get("containerStatuses") or []:
        waiting = (s.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return str(waiting["reason"])
    for s in _status(obj).get("containerStatuses") or []:
        terminated = (s.get("state") or {}).get("terminated")
        if terminated and terminated.get("reason"):
            return str(terminated["reason"])
    return str(_status(obj).get("phase", "Pending"))


def _ports(obj: Obj) -> str:
    out = []
    for port in _spec(obj).get("ports") or []:
        text = f"{port.get('port')}"
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        out.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _selector(obj: Obj) -> str:
    selector = _spec(obj).get("selector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>"


def _external_ip(obj: Obj) -> str:
    ingress = (_status(obj).get("loadBalancer") or {}).get("ingress") or []
    ips = [i.get("ip") or i.get("hostname") for i in ingress]
    if ips:
        return ",".join(str(ip) for ip in ips)
    if _spec(obj).get("type") == "LoadBalancer":
        return "<pending>"
    return ",".join(_spec(obj).get("externalIPs") or []) or "<none>"


def _job_status(obj: Obj) -> str:
    for cond in _status(obj).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return str(cond["type"])
    return "Running"


def _node_ready(obj: Obj) -> str:
    for cond in _status(obj).get("conditions") or []:
        if cond.get("type") == "Ready":
            return "Ready" if cond.get("status") == "True" else "NotReady"
    return "Unknown"


def _n(value: Any) -> int:
    return int(value or 0)


NAME: Column = ("Name", "string", 0, lambda o: o["metadata"]["name"])
AGE: Column = ("Age", "string", 0, _age)

COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("", "pods"): [
        NAME,
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, _pod_status),
        (
            "Restarts",
            "integer",
            0,
            lambda o: sum(
                _n(s.get("restartCount")) for s in _status(o).get("containerStatuses") or []
            ),
        ),
        AGE,
        ("IP", "string", 1, lambda o: _status(o).get("podIP", "<none>")),
        ("Node", "string", 1, lambda o: _spec(o).get("nodeName", "<none>")),
    ],
    ("apps", "deployments"): [
        NAME,
        (
            "Ready",
            "string",
            0,
            lambda o: f"{_n(_status(o).get('readyReplicas'))}/{_n(_spec(o).get('replicas'))}",
        ),
        ("Up-to-date", "integer", 0, lambda o: _n(_status(o).get("updatedReplicas"))),
        ("Available", "integer", 0, lambda o: _n(_status(o).get("availableReplicas"))),
        AGE,
    ],
    ("apps", "replicasets"): [
        NAME,
        ("Desired", "integer", 0, lambda o: _n(_spec(o).get("replicas"))),
        ("Current", "integer", 0, lambda o: _n(_status(o).get("replicas"))),
        ("Ready", "integer", 0, lambda o: _n(_status(o).get("readyReplicas"))),
        AGE,
    ],
    ("apps", "statefulsets"): [
        NAME,
        (
            "Ready",
            "string",
            0,
            lambda o: f"{_n(_status(o).get('readyReplicas'))}/{_n(_spec(o).get('replicas'))}",
        ),
        AGE,
    ],
    ("apps", "daemonsets"): [
        NAME,
        ("Desired", "integer", 0, lambda o: _n(_status(o).get("desiredNumberScheduled"))),
        ("Current", "integer", 0, lambda o: _n(_status(o).get("currentNumberScheduled"))),
        ("Ready", "integer", 0, lambda o: _n(_status(o).get("numberReady"))),
        ("Up-to-date", "integer", 0, lambda o: _n(_status(o).get("updatedNumberScheduled"))),
        ("Available", "integer", 0, lambda o: _n(_status(o).get("numberAvailable"))),
        AGE,
    ],
    ("batch", "jobs"): [
        NAME,
        ("Status", "string", 0, _job_status),
        (
            "Completions",
            "string",
            0,
            lambda o: f"{_n(_status(o).get('succeeded'))}/{_n(_spec(o).get('completions'))}",
        ),
        AGE,
    ],
    ("", "services"): [
        NAME,
        ("Type", "string", 0, lambda o: _spec(o).get("type", "ClusterIP")),
        ("Cluster-IP", "string", 0, lambda o: _spec(o).get("clusterIP", "<none>")),
        ("External-IP", "string", 0, _external_ip),
        ("Port(s)", "string", 0, _ports),
        AGE,
        ("Selector", "string", 1, _selector),
    ],
    ("", "namespaces"): [NAME, ("Status", "string", 0, lambda o: _status(o).get("phase", "")), AGE],
    ("", "configmaps"): [
        NAME,
        ("Data", "integer", 0, lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
        AGE,
    ],
    ("", "secrets"): [
        NAME,
        ("Type", "string", 0, lambda o: o.get("type", "")),
        ("Data", "integer", 0, lambda o: len(o.get("data") or {})),
        AGE,
    ],
    ("", "nodes"): [
        NAME,
        ("Status", "string", 0, _node_ready),
        ("Roles", "string", 0, lambda o: "<none>"),
        AGE,
        (
            "Version",
            "string",
            0,
            lambda o: (_status(o).get("nodeInfo") or {}).get("kubeletVersion", ""),
        ),
    ],
}


def _jsonpath_cell(path: str) -> Callable[[Obj], Any]:
    """A cell for a CRD printer column: only `.a.b.c` paths are understood."""
    parts = [p for p in path.strip().lstrip("{").rstrip("}").split(".") if p]

    def cell(obj: Obj) -> Any:
        value: Any = obj
        for part in parts:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        if isinstance(value, dict | list):
            return str(value)
        return value

    return cell


def crd_columns(crd: Obj, version: str) -> list[Column]:
    for v in (crd.get("spec") or {}).get("versions") or []:
        if v.get("name") == version and v.get("additionalPrinterColumns"):
            cols: list[Column] = [NAME]
            for col in v["additionalPrinterColumns"]:
                if col.get("jsonPath") == ".metadata.creationTimestamp":
                    cols.append((col.get("name", "Age"), "string", 0, _age))
                else:
                    cols.append(
                        (
                            col.get("name", ""),
                            col.get("type", "string"),
                            int(col.get("priority", 0)),
                            _jsonpath_cell(col["jsonPath"]),
                        )
                    )
            return cols
    return [NAME, AGE]


def columns_for(storage_key: tuple[str, str]) -> list[Column]:
    return COLUMNS.get(
        storage_key,
        [NAME, ("Created At", "date", 0, lambda o: o["metadata"].get("creationTimestamp"))],
    )


def _partial(obj: Obj) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def table(
    columns: list[Column],
    items: list[Obj],
    metadata: dict[str, Any],
    *,
    with_definitions: bool = True,
    include_object: str = "Metadata",
) -> dict[str, Any]:
    rows = []
    for obj in items:
        row: dict[str, Any] = {"cells": [cell(obj) for _, _, _, cell in columns]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = _partial(obj)
        rows.append(row)
    out: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "rows": rows,
    }
    out["columnDefinitions"] = (
        [
            {
                "name": name,
                "type": kind,
                "format": "name" if name == "Name" else "",
                "description": name,
                "priority": priority,
            }
            for name, kind, priority, _ in columns
        ]
        if with_definitions
        else []
    )
    return out
