// Command etcd: the etcd server (go.etcd.io/etcd/server/v3), the real API server's storage.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
