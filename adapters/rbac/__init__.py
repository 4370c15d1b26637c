"""Least-privilege RBAC for one adapter, derived from what its operations put in a cluster.

An adapter needs exactly the (API group, resource, verb) triples its apply engine and checks use
on the kinds its charts, manifests and builders produce, plus what the kit itself touches
(inventory Secrets, release Namespaces, Pods when explaining a stuck workload). Server-side
apply is a PATCH, and when it creates the object the API server also authorizes ``create``
(k8s.io/apiserver endpoints/handlers/patch.go), so applied kinds need both.

Kubernetes refuses to let anyone create a Role or ClusterRole granting permissions the creator
does not hold, or bind a role whose permissions it does not hold (RBAC escalation prevention).
So the rules of every rendered Role/ClusterRole are part of the adapter's role too; every
binding gets ``bind`` on the one role name it refers to, and an aggregated ClusterRole (whose
rules the cluster fills in) needs ``escalate``. ``bind`` is needed even for a role the charts
render: without it the API server reads the role to compare its rules with the applier's, and
the apply engine applies roles and their bindings in one tier, concurrently, so the role may not
exist yet (the real API server then answers 404 for the binding). It grants nothing the adapter
does not already hold through the rendered role's rules.

A build-time tool (`meshplane rbac MESH`, `command`), beside the conformance suite: `derivation`
renders and builds what the declaration may apply, `collecting` turns that into permissions,
`requirements` merges them into rules, `role_document` writes the ClusterRole.
"""
