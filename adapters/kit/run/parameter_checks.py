"""A request's parameters judged against its operation's declared ones: names it knows, values
it allows, the declaration's own checks; the result is the parameters with defaults filled in.
"""

from __future__ import annotations

from collections.abc import Mapping

from adapters.kit.declare.operations import OperationSpec
from adapters.kit.declare.parameters import Parameter
from adapters.kit.model.object_policy import (
    RETIRED_CLUSTER_SCOPED_PARAMETER,
    retired_parameter_message,
)
from adapters.kit.run.request_errors import InvalidArgument
from serving.input_quoting import quoted

__all__ = ["checked_parameters", "effective_parameters"]


def effective_parameters(spec: OperationSpec, sent: Mapping[str, str]) -> dict[str, str]:
    """``sent`` over the declared defaults of ``spec``'s parameters."""
    effective = {p.name: p.default for p in spec.request_parameters if p.default}
    effective.update(sent)
    return effective


def checked_parameters(spec: OperationSpec, sent: Mapping[str, str]) -> dict[str, str]:
    """The effective parameters of a request sending ``sent``; raises `InvalidArgument`
    naming ``parameters.NAME`` for the first one that is unknown, missing or refused."""
    _check_names(spec, sent)
    effective = effective_parameters(spec, sent)
    for parameter in spec.request_parameters:
        _check_value(spec, parameter, effective.get(parameter.name))
    if spec.request_check is not None:
        for field, message in spec.request_check(effective):
            raise InvalidArgument(field, message)
    return effective


def _check_names(spec: OperationSpec, sent: Mapping[str, str]) -> None:
    accepted = {p.name for p in spec.request_parameters}
    retired = RETIRED_CLUSTER_SCOPED_PARAMETER
    if retired in sent and retired not in accepted:
        raise InvalidArgument(f"parameters.{retired}", retired_parameter_message())
    for name in sorted(sent):
        if name not in accepted:
            names = ", ".join(sorted(accepted)) or "none"
            raise InvalidArgument(
                f"parameters.{name}",
                f"operation {spec.id!r} has no parameter {quoted(name)}; it accepts: {names}",
            )


def _check_value(spec: OperationSpec, parameter: Parameter, value: str | None) -> None:
    field = f"parameters.{parameter.name}"
    if value is None or value == "":
        if parameter.required:
            raise InvalidArgument(field, f"is required by {spec.id!r}: {parameter.description}")
        return
    if parameter.allowed and value not in parameter.allowed:
        raise InvalidArgument(
            field, f"{quoted(value)} is not one of {', '.join(parameter.allowed)}"
        )
    if parameter.check is not None:
        problem = parameter.check(value)
        if problem:
            raise InvalidArgument(field, problem)
