"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake nodes), built from Go modules by `make kube` (tools/kube).

`meshplane kube up` runs it (`realkube.cli`); tests and the sandbox start it through
`realkube.control_plane`. Like kubesim, it imports no other meshplane package.
"""
