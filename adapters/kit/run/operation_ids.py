"""Operation ids: the one a request names (or a generated one), and the rule for re-using one.

Idempotency follows the Stripe rule: an operation_id names one request. Re-sending it returns
the existing operation (or resumes it when INTERRUPTED); re-sending it with a different body is
rejected with FAILED_PRECONDITION naming the differing field, because silently returning the
old operation would hide that the new request never ran. Fields left empty in the re-sent
request (namespace, mesh_version, parameters with defaults) match whatever was resolved the
first time, so a resume keeps the version the first attempt installed. The coordinator judges
re-sends by the same rule (`serving.operation_reuse`).
"""

from __future__ import annotations

import re
import uuid

from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.model.records import OperationRecord, OperationRequest
from adapters.kit.run.parameter_checks import effective_parameters
from adapters.kit.run.request_errors import FailedPrecondition, InvalidArgument
from serving.input_quoting import quoted
from serving.operation_reuse import custom_body_digest, identity_of, reuse_difference

__all__ = ["OPERATION_ID", "check_same_request", "operation_id_of"]

OPERATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def operation_id_of(request: OperationRequest) -> str:
    """The request's operation_id, or a new one when it sends none (`InvalidArgument` when it
    is not a valid id)."""
    operation_id = request.operation_id or str(uuid.uuid4())
    if not OPERATION_ID.fullmatch(operation_id):
        raise InvalidArgument(
            "operation_id",
            f"{quoted(operation_id)} is not a valid id (1-128 characters of "
            "A-Z a-z 0-9 . _ : -); leave it empty to get a generated one",
        )
    return operation_id


def check_same_request(
    declaration: MeshDeclaration,
    existing: OperationRecord,
    request: OperationRequest,
    *,
    default_cluster: str,
) -> None:
    """Reject (`FailedPrecondition`) a re-used operation_id whose request differs from the
    recorded one; ``default_cluster`` is what a request naming no clusters runs on."""
    spec = declaration.operation(existing.operation)
    defaults = {} if spec is None else effective_parameters(spec, {})
    difference = reuse_difference(
        identity_of(
            existing.mesh,
            existing,
            custom_body_sha256=custom_body_digest(existing.custom_body),
            clusters=existing.clusters,
        ),
        identity_of(
            declaration.mesh,
            request,
            custom_body_sha256=custom_body_digest(request.custom_body),
            clusters=tuple(c.name for c in request.clusters),
        ),
        parameter_defaults=defaults,
        default_clusters=(default_cluster,),
    )
    if difference is not None:
        raise FailedPrecondition(
            f"operation_id {existing.operation_id!r} already names a different request: "
            f"{difference.describe()}; re-send the original request to get (or resume) that "
            "operation, or use a new operation_id"
        )
