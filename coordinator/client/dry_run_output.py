"""How `meshplane apply --dry-run` prints what an operation would change.

``-o table`` (default): one row per object that would be created, changed or deleted (ACTION,
KIND, NAMESPACE, NAME, and the changed fields or a note; a CLUSTER column when the operation
targets several), then one summary line per cluster. ``-o json|yaml``: the coordinator's answer as
one document (``operation`` and ``dry_run_result``). Exit 0 when the dry run succeeded on every
cluster, else `EXIT_FAILED` with each cluster's error on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from coordinator.client.channel import EXIT_FAILED
from coordinator.client.output import Column, Listing, as_dict, print_document, print_listing
from meshplane.adapter.v1 import adapter_pb2 as apb

__all__ = ["DRY_RUN_SECONDS", "print_dry_run"]

DRY_RUN_SECONDS = 300.0
"""The client's deadline for a dry run without --timeout (the coordinator allows as long)."""

_ACTIONS = {
    apb.OBJECT_CHANGE_ACTION_CREATE: "create",
    apb.OBJECT_CHANGE_ACTION_UPDATE: "change",
    apb.OBJECT_CHANGE_ACTION_DELETE: "delete",
    apb.OBJECT_CHANGE_ACTION_PRUNE: "prune",
}


def _details(change: apb.ObjectChange) -> str:
    return "; ".join(part for part in (", ".join(change.changed_fields), change.message) if part)


def _listing(response: Any) -> Listing:
    clusters = list(response.dry_run_result.clusters)
    several = len(clusters) > 1
    columns = [Column(header="CLUSTER")] if several else []
    columns += [
        Column(header="ACTION"),
        Column(header="KIND"),
        Column(header="NAMESPACE"),
        Column(header="NAME"),
        Column(header="CHANGED FIELDS / NOTE"),
    ]
    rows: list[list[str]] = []
    names: list[str] = []
    for cluster in clusters:
        for change in cluster.changes:
            row = [cluster.cluster] if several else []
            row += [
                _ACTIONS.get(change.action, "?"),
                change.kind,
                change.namespace,
                change.name,
                _details(change),
            ]
            rows.append(row)
            names.append(f"{change.kind.lower()}/{change.name}")
    return Listing(columns=columns, rows=rows, names=names, document=as_dict(response))


def _summary(cluster: apb.ClusterDryRun) -> str:
    counts = {action: 0 for action in _ACTIONS.values()}
    for change in cluster.changes:
        counts[_ACTIONS.get(change.action, "create")] += 1
    omitted = f" ({cluster.changes_omitted} more not listed)" if cluster.changes_omitted else ""
    return (
        f"dry run on {cluster.cluster}: {counts['create']} to create, {counts['change']} to "
        f"change, {counts['delete'] + counts['prune']} to delete, {cluster.objects_unchanged} "
        f"unchanged{omitted}; nothing was changed"
    )


def print_dry_run(response: Any, output: str) -> int:
    """Print a dry run's answer (a coordinator ``ApplyOperationResponse``) as ``output`` asks."""
    clusters = list(response.dry_run_result.clusters)
    if output != "table":
        print_document(as_dict(response), output)
    else:
        print_listing(_listing(response), argparse.Namespace(output="table", no_headers=False))
        for cluster in clusters:
            if not cluster.HasField("error"):
                print(_summary(cluster))
    failed = [cluster for cluster in clusters if cluster.HasField("error")]
    for cluster in failed:
        error = cluster.error
        print(f"dry run on {cluster.cluster} failed: {error.message}", file=sys.stderr)
        if error.suggested_remediation:
            print(f"  fix: {error.suggested_remediation}", file=sys.stderr)
    return EXIT_FAILED if failed else 0
