package fleettest

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster of three masters on loopback, without
// replicas: enough to show that every script's keys share one hash slot
// (a script touching two slots fails with CROSSSLOT).
type Cluster struct {
	Nodes []*Redis
}

// StartCluster starts three cluster-enabled servers, joins them with
// `redis-cli --cluster create`, and waits until the cluster is ok. The
// servers are killed in t.Cleanup.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err == nil {
		_, err = exec.LookPath("redis-cli")
	}
	if err != nil {
		if testing.Short() {
			t.Skipf("redis-server or redis-cli not found: run `make deps` (%v)", err)
		}
		t.Fatalf("redis-server or redis-cli not found: run `make deps` (Debian package redis-server): %v", err)
	}
	c := &Cluster{}
	args := []string{"create"}
	for range 3 {
		bus, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		_, busPort, _ := net.SplitHostPort(bus)
		n := start(t, bin, []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000", "--cluster-port", busPort})
		c.Nodes = append(c.Nodes, n)
		args = append(args, n.Addr)
	}
	args = append([]string{"--cluster"}, append(args, "--cluster-replicas", "0", "--cluster-yes")...)
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("fleettest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.After(20 * time.Second)
	for _, n := range c.Nodes {
		for !clusterOK(n.Addr) {
			select {
			case <-deadline:
				t.Fatalf("fleettest: cluster not ok after 20s (node %s)", n.Addr)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return c
}

// URL is the coordinator URL of the cluster: the first node, the others
// as more seeds, cluster=true.
func (c *Cluster) URL() string {
	u := "redis://" + c.Nodes[0].Addr + "?cluster=true"
	for _, n := range c.Nodes[1:] {
		u += "&addr=" + n.Addr
	}
	return u
}

// clusterOK reports whether the node says cluster_state:ok.
func clusterOK(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := fmt.Fprint(conn, "CLUSTER INFO\r\n"); err != nil {
		return false
	}
	rd := bufio.NewReader(conn)
	head, err := rd.ReadString('\n') // $<len>
	if err != nil || !strings.HasPrefix(head, "$") {
		return false
	}
	line, err := rd.ReadString('\n')
	return err == nil && strings.TrimSpace(line) == "cluster_state:ok"
}
