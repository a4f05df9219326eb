// Command istiod runs Istio's own xDS discovery server (istio.io/istio pilot/pkg/xds with the
// proxyless "grpc" generator, the ServiceEntry/WorkloadEntry registry and Istio's config
// translation) on a loopback port, with Istio YAML read from a directory, and no Kubernetes.
//
// Why not the pilot-discovery binary: every istio.io/istio version the Go module proxy serves
// here (a 1.30 pre-release, release-1.30, release-1.31; no 1.29.x) crashes in
// serviceentry.NewController without a Kubernetes cluster (a nil multicluster controller), and
// the 1.30 ones need modules the proxy does not serve. Istio's own proxyless gRPC tests
// (pilot/pkg/networking/grpcgen) run grpc-go against this same server, pilot/test/xds's
// FakeDiscoveryServer, which builds the real DiscoveryServer over an in-memory Kubernetes client;
// this command does the same for our tests, with the config watched on disk.
//
// Flags: -grpc ADDR (xDS, plaintext), -http ADDR (GET /ready answers 200 once serving),
// -config DIR (every *.yaml file in it, reloaded when it changes).
package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"istio.io/istio/pilot/pkg/config/kube/crd"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config"
)

// failer is the test.Failer FakeDiscoveryServer wants, for a long-running process: a fatal
// error exits, cleanups run at shutdown.
type failer struct {
	mu       sync.Mutex
	cleanups []func()
	dir      string
}

func (f *failer) Fail()                            { f.Fatal("failed") }
func (f *failer) FailNow()                         { f.Fatal("failed") }
func (f *failer) Fatal(args ...any)                { fmt.Fprintln(os.Stderr, append([]any{"istiod: fatal:"}, args...)...); os.Exit(1) }
func (f *failer) Fatalf(format string, args ...any) { f.Fatal(fmt.Sprintf(format, args...)) }
func (f *failer) Log(args ...any)                  { fmt.Fprintln(os.Stderr, args...) }
func (f *failer) Logf(format string, args ...any)  { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (f *failer) TempDir() string                  { return f.dir }
func (f *failer) Helper()                          {}
func (f *failer) Skip(args ...any)                 { f.Fatal(append([]any{"skip:"}, args...)...) }
func (f *failer) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// readConfig concatenates the directory's YAML files (sorted by name) and hashes them.
func readConfig(dir string) (string, [32]byte, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return "", [32]byte{}, err
	}
	sort.Strings(files)
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", [32]byte{}, err
		}
		b.WriteString("\n---\n")
		b.Write(data)
	}
	return b.String(), sha256.Sum256([]byte(b.String())), nil
}

func key(c config.Config) string {
	return c.GroupVersionKind.String() + "/" + c.Namespace + "/" + c.Name
}

// apply makes the store hold exactly `want`.
func apply(store model.ConfigStore, have map[string]config.Config, want []config.Config) (map[string]config.Config, error) {
	next := map[string]config.Config{}
	for _, c := range want {
		k := key(c)
		if _, dup := next[k]; dup {
			return have, fmt.Errorf("%s is defined twice", k)
		}
		next[k] = c
	}
	for k, old := range have {
		if _, keep := next[k]; !keep {
			if err := store.Delete(old.GroupVersionKind, old.Name, old.Namespace, nil); err != nil {
				return have, fmt.Errorf("delete %s: %v", k, err)
			}
		}
	}
	for k, c := range next {
		if _, exists := have[k]; exists {
			cur := store.Get(c.GroupVersionKind, c.Name, c.Namespace)
			if cur != nil {
				c.ResourceVersion = cur.ResourceVersion
			}
			if _, err := store.Update(c); err != nil {
				return have, fmt.Errorf("update %s: %v", k, err)
			}
		} else if _, err := store.Create(c); err != nil {
			return have, fmt.Errorf("create %s: %v", k, err)
		}
	}
	return next, nil
}

func main() {
	grpcAddr := flag.String("grpc", "127.0.0.1:15010", "xDS (plaintext gRPC) listen address")
	httpAddr := flag.String("http", "127.0.0.1:8080", "readiness (GET /ready) listen address")
	dir := flag.String("config", "", "directory of Istio YAML files")
	poll := flag.Duration("poll", 200*time.Millisecond, "how often the config directory is checked")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "istiod: -config DIR is required")
		os.Exit(2)
	}
	tmp, err := os.MkdirTemp("", "istiod")
	if err != nil {
		fmt.Fprintln(os.Stderr, "istiod:", err)
		os.Exit(1)
	}
	f := &failer{dir: tmp}

	text, sum, err := readConfig(*dir)
	if err != nil {
		f.Fatal(err)
	}
	initial, _, err := crd.ParseInputs(text)
	if err != nil {
		f.Fatalf("config: %v", err)
	}
	ds := xds.NewFakeDiscoveryServer(f, xds.FakeOptions{
		ListenerBuilder: func() (net.Listener, error) { return net.Listen("tcp", *grpcAddr) },
	})
	have, err := apply(ds.Store(), map[string]config.Config{}, initial)
	if err != nil {
		f.Fatalf("config: %v", err)
	}
	ds.Discovery.ConfigUpdate(&model.PushRequest{Forced: true, Reason: model.NewReasonStats(model.ConfigUpdate)})

	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ready") })
	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		f.Fatal(err)
	}
	go func() { _ = http.Serve(hl, mux) }()
	fmt.Printf("istiod: xDS on %s, ready on %s, %d configs from %s\n", ds.Listener.Addr(), hl.Addr(), len(have), *dir)

	for {
		time.Sleep(*poll)
		text, next, err := readConfig(*dir)
		if err != nil || next == sum {
			continue
		}
		configs, _, err := crd.ParseInputs(text)
		if err != nil {
			fmt.Fprintf(os.Stderr, "istiod: config rejected, keeping the previous one: %v\n", err)
			sum = next
			continue
		}
		if have, err = apply(ds.Store(), have, configs); err != nil {
			fmt.Fprintf(os.Stderr, "istiod: %v\n", err)
		}
		sum = next
		ds.Discovery.ConfigUpdate(&model.PushRequest{Forced: true, Reason: model.NewReasonStats(model.ConfigUpdate)})
		fmt.Printf("istiod: config reloaded, %d configs\n", len(have))
	}
}
