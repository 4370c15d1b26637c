// Command kubectl: the upstream kubectl (k8s.io/kubectl) at the same version as the API server,
// for the benchmarks that compare the adapters with `kubectl apply --server-side`.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err) // prints the error and exits non-zero
	}
}
