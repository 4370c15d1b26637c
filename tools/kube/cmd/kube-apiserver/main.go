// Command kube-apiserver: the upstream kube-apiserver (k8s.io/kubernetes), built by meshplane's tools/kube module
// so the real-Kubernetes tests run against exactly this version.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
