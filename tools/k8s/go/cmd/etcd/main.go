// etcd at the version Kubernetes pins (go.mod): Debian's 3.4 predates the progress notifications the API
// server needs to serve streaming lists, which the clients of Kubernetes 1.35+ ask for by default.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
