"""Resource names of built-in kinds, as `kubectl api-resources` lists them (CRDs give theirs)."""

from __future__ import annotations

from adapters.rbac.permissions import RBAC_GROUP

__all__ = ["BUILTIN_RESOURCES"]

# (group, kind) -> resource name, as `kubectl api-resources` lists them.
BUILTIN_RESOURCES: dict[tuple[str, str], str] = {
    ("", "ConfigMap"): "configmaps",
    ("", "Endpoints"): "endpoints",
    ("", "Event"): "events",
    ("", "LimitRange"): "limitranges",
    ("", "Namespace"): "namespaces",
    ("", "Node"): "nodes",
    ("", "PersistentVolume"): "persistentvolumes",
    ("", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("", "Pod"): "pods",
    ("", "PodTemplate"): "podtemplates",
    ("", "ReplicationController"): "replicationcontrollers",
    ("", "ResourceQuota"): "resourcequotas",
    ("", "Secret"): "secrets",
    ("", "Service"): "services",
    ("", "ServiceAccount"): "serviceaccounts",
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ): "mutatingwebhookconfigurations",
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"): "validatingadmissionpolicies",
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ): "validatingadmissionpolicybindings",
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ): "validatingwebhookconfigurations",
    ("apiextensions.k8s.io", "CustomResourceDefinition"): "customresourcedefinitions",
    ("apiregistration.k8s.io", "APIService"): "apiservices",
    ("apps", "ControllerRevision"): "controllerrevisions",
    ("apps", "DaemonSet"): "daemonsets",
    ("apps", "Deployment"): "deployments",
    ("apps", "ReplicaSet"): "replicasets",
    ("apps", "StatefulSet"): "statefulsets",
    ("autoscaling", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("batch", "CronJob"): "cronjobs",
    ("batch", "Job"): "jobs",
    ("coordination.k8s.io", "Lease"): "leases",
    ("discovery.k8s.io", "EndpointSlice"): "endpointslices",
    ("events.k8s.io", "Event"): "events",
    ("networking.k8s.io", "Ingress"): "ingresses",
    ("networking.k8s.io", "IngressClass"): "ingressclasses",
    ("networking.k8s.io", "NetworkPolicy"): "networkpolicies",
    ("policy", "PodDisruptionBudget"): "poddisruptionbudgets",
    (RBAC_GROUP, "ClusterRole"): "clusterroles",
    (RBAC_GROUP, "ClusterRoleBinding"): "clusterrolebindings",
    (RBAC_GROUP, "Role"): "roles",
    (RBAC_GROUP, "RoleBinding"): "rolebindings",
    ("scheduling.k8s.io", "PriorityClass"): "priorityclasses",
    ("storage.k8s.io", "StorageClass"): "storageclasses",
}
