"""The ClusterRole aggregation controller: aggregated roles follow the roles they select."""

from __future__ import annotations

from kubesim import rbac
from kubesim.controllers.reconciling import ControllerBase
from kubesim.objects import copy_json


class RoleAggregation(ControllerBase):
    def _aggregate(self, _: str, name: str) -> None:
        """An aggregated role's `rules` are those of the ClusterRoles its `aggregationRule`
        selects."""
        store = self.cluster.store
        role = store.get(rbac.CLUSTER_ROLES, "", name)
        rt = self.cluster.type_of(rbac.CLUSTER_ROLES)
        if role is None or rt is None or not isinstance(role.get("aggregationRule"), dict):
            return
        rules = rbac.aggregated_rules(store, role)
        if (role.get("rules") or []) == rules:
            return
        new = copy_json(role)
        new["rules"] = rules
        self.cluster.write(rt, role, new)
