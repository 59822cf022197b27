// Command etcd is the etcd server the end-to-end tests run beside a real
// kube-apiserver. It is etcd's own main, built from the published module so
// no release download is needed.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
