#!/usr/bin/env python3
"""A small xDS interop client on Python grpcio (gRPC C-core), for the interop suite.

It behaves like gRPC's xDS interop clients (grpc-go's `interop/xds/client`, grpc's
`src/python/grpcio_tests/tests_py3_only/interop/xds_interop_client.py`), written here from
scratch with only what the suite's scenarios use:

- `--num_channels` channels to `--server` (`xds:///host:port`; the xDS bootstrap comes from
  `GRPC_XDS_BOOTSTRAP_CONFIG` or `GRPC_XDS_BOOTSTRAP`), each sending every RPC type of
  `--rpc` (`UnaryCall`, `EmptyCall`) `--qps` times a second, with `--metadata`
  (`EmptyCall:key:value,UnaryCall:key:value`) and a deadline of `--rpc_timeout_sec`.
- `grpc.testing.LoadBalancerStatsService` and `grpc.health.v1.Health` on `--stats_port`
  (loopback only). `GetClientStats` watches the next `num_rpcs` RPCs *sent* and counts each
  successful one for the peer named by the server's `hostname` (response header, else
  `SimpleResponse.hostname`); an RPC that failed, or named no peer, or had not finished by
  `timeout_sec` is a failure. `GetClientAccumulatedStats` reports totals since start, keyed
  by RpcType name (`UNARY_CALL`, `EMPTY_CALL`).
- `--fail_on_failed_rpc`: exit non-zero on the first failed RPC after one has succeeded.
- `--secure_mode`: like grpc-go's, xDS channel credentials with an insecure fallback
  (`grpc.xds_channel_credentials`): a cluster whose CDS carries an `UpstreamTlsContext` is
  reached over TLS with the bootstrap's `certificate_providers` (gRFC A29), others in
  plaintext; without it, insecure credentials (the CDS security config is ignored).

The Python stubs are generated at start-up from the project's protos
(`xds-proto/proto/grpc/testing/*.proto`, or `--proto_dir`) with `grpc_tools.protoc` into a
temporary directory, which is removed once they are imported.

Needs the packages of `requirements.txt` (the suite's harness makes a venv with them).
"""

import argparse
import collections
import importlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc
import grpc.experimental

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "..", "xds-proto", "proto"))
PROTOS = ("empty.proto", "messages.proto", "test.proto")
# The generated modules live under this package, not `grpc.testing` (which would collide
# with grpcio's own `grpc` package); the protobuf package stays `grpc.testing`.
STUB_PACKAGE = "meshinteropstubs"

METHODS = {"UnaryCall": "UNARY_CALL", "EmptyCall": "EMPTY_CALL"}

# Set once an RPC has succeeded (for --fail_on_failed_rpc).
SUCCEEDED = threading.Event()


def log(msg):
    print(f"[xds_interop_client] {msg}", file=sys.stderr, flush=True)


def parse_bool(text):
    value = str(text).strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default="localhost:8080", help="target, e.g. xds:///host:port")
    p.add_argument("--stats_port", type=int, default=8081)
    p.add_argument("--qps", type=int, default=1, help="RPCs per second per channel, per RPC type")
    p.add_argument("--num_channels", type=int, default=1)
    p.add_argument("--rpc", default="UnaryCall", help="comma-separated: UnaryCall,EmptyCall")
    p.add_argument("--metadata", default="", help="EmptyCall:key:value,UnaryCall:key:value")
    p.add_argument("--rpc_timeout_sec", type=float, default=30)
    p.add_argument("--fail_on_failed_rpc", type=parse_bool, nargs="?", const=True, default=False)
    p.add_argument("--secure_mode", type=parse_bool, nargs="?", const=True, default=False)
    p.add_argument("--print_response", type=parse_bool, nargs="?", const=True, default=False)
    p.add_argument("--proto_dir", default=DEFAULT_PROTO_DIR, help="holds grpc/testing/*.proto")
    args = p.parse_args(argv)
    if args.qps <= 0 or args.num_channels <= 0:
        p.error("--qps and --num_channels must be positive")
    args.rpc = [r.strip() for r in args.rpc.split(",") if r.strip()]
    for r in args.rpc:
        if r not in METHODS:
            p.error(f"unknown --rpc {r!r} (want UnaryCall or EmptyCall)")
    metadata = collections.defaultdict(list)
    for entry in filter(None, (e.strip() for e in args.metadata.split(","))):
        parts = entry.split(":", 2)
        if len(parts) != 3 or parts[0] not in METHODS:
            p.error(f"bad --metadata entry {entry!r} (want Method:key:value)")
        metadata[parts[0]].append((parts[1].lower(), parts[2]))
    args.metadata = metadata
    return args


def load_stubs(proto_dir):
    """Generates and imports the grpc.testing stubs; returns (empty, messages, test, test_grpc)."""
    from grpc_tools import protoc

    src = os.path.join(proto_dir, "grpc", "testing")
    tmp = tempfile.mkdtemp(prefix="mesh-interop-py-")
    try:
        out_protos = os.path.join(tmp, STUB_PACKAGE, "grpc", "testing")
        os.makedirs(out_protos)
        for name in PROTOS:
            with open(os.path.join(src, name), encoding="utf-8") as f:
                text = f.read()
            text = text.replace('import "grpc/testing/', f'import "{STUB_PACKAGE}/grpc/testing/')
            with open(os.path.join(out_protos, name), "w", encoding="utf-8") as f:
                f.write(text)
        well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
        command = [
            "grpc_tools.protoc",
            f"-I{tmp}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
        ] + [f"{STUB_PACKAGE}/grpc/testing/{name}" for name in PROTOS]
        if protoc.main(command) != 0:
            raise RuntimeError(f"grpc_tools.protoc failed on {src}")
        sys.path.insert(0, tmp)
        sys.dont_write_bytecode = True
        prefix = f"{STUB_PACKAGE}.grpc.testing."
        modules = tuple(
            importlib.import_module(prefix + m)
            for m in ("empty_pb2", "messages_pb2", "test_pb2", "test_pb2_grpc")
        )
        sys.path.remove(tmp)
        return modules
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Watcher:
    """The outcome of RPCs numbered start..end-1 (numbered when sent)."""

    def __init__(self, start, end):
        self.start = start
        self.end = end
        self.remaining = end - start
        self.failures = 0
        self.by_peer = collections.Counter()
        self.by_method = collections.defaultdict(collections.Counter)
        self.cond = threading.Condition()

    def record(self, method, hostname):
        with self.cond:
            if self.remaining <= 0:
                return
            if hostname:
                self.by_peer[hostname] += 1
                self.by_method[method][hostname] += 1
            else:
                self.failures += 1
            self.remaining -= 1
            if self.remaining == 0:
                self.cond.notify_all()

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.remaining > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)


class Stats:
    """Every RPC's outcome, for the watchers and the accumulated totals."""

    def __init__(self):
        self.lock = threading.Lock()
        self.next_id = 0
        self.watchers = []
        self.started = collections.Counter()
        self.succeeded = collections.Counter()
        self.failed = collections.Counter()
        self.results = collections.defaultdict(collections.Counter)

    def start_rpc(self, method):
        """Numbers a new RPC; returns the watchers interested in it."""
        with self.lock:
            rpc_id = self.next_id
            self.next_id += 1
            self.started[METHODS[method]] += 1
            return [w for w in self.watchers if w.start <= rpc_id < w.end]

    def finish_rpc(self, method, watchers, code, hostname):
        for w in watchers:
            w.record(method, hostname if code == grpc.StatusCode.OK else "")
        name = METHODS[method]
        with self.lock:
            self.results[name][code.value[0]] += 1
            (self.succeeded if code == grpc.StatusCode.OK else self.failed)[name] += 1

    def add_watcher(self, num_rpcs):
        with self.lock:
            w = Watcher(self.next_id, self.next_id + num_rpcs)
            self.watchers.append(w)
            return w

    def remove_watcher(self, w):
        with self.lock:
            self.watchers.remove(w)


def make_stats_servicer(stats, messages, test_grpc):
    class StatsServicer(test_grpc.LoadBalancerStatsServiceServicer):
        def GetClientStats(self, request, context):
            response = messages.LoadBalancerStatsResponse()
            if request.num_rpcs <= 0:
                return response
            w = stats.add_watcher(request.num_rpcs)
            try:
                w.wait(request.timeout_sec)
            finally:
                stats.remove_watcher(w)
            with w.cond:
                for peer, n in w.by_peer.items():
                    response.rpcs_by_peer[peer] = n
                for method, peers in w.by_method.items():
                    for peer, n in peers.items():
                        response.rpcs_by_method[method].rpcs_by_peer[peer] = n
                response.num_failures = w.failures + w.remaining
            return response

        def GetClientAccumulatedStats(self, request, context):
            response = messages.LoadBalancerAccumulatedStatsResponse()
            with stats.lock:
                for name, n in stats.started.items():
                    response.num_rpcs_started_by_method[name] = n
                    response.stats_per_method[name].rpcs_started = n
                for name, n in stats.succeeded.items():
                    response.num_rpcs_succeeded_by_method[name] = n
                for name, n in stats.failed.items():
                    response.num_rpcs_failed_by_method[name] = n
                for name, codes in stats.results.items():
                    for code, n in codes.items():
                        response.stats_per_method[name].result[code] = n
            return response

    return StatsServicer()


class Sender:
    """One channel's RPC loop: every `1/qps` s, one RPC of each configured type."""

    def __init__(self, index, args, stats, stubs, on_fatal):
        self.index = index
        self.args = args
        self.stats = stats
        self.empty, self.messages, _, test_grpc = stubs
        if args.secure_mode:
            fallback = grpc.experimental.insecure_channel_credentials()
            creds = grpc.xds_channel_credentials(fallback)
            self.channel = grpc.secure_channel(args.server, creds)
        else:
            self.channel = grpc.insecure_channel(args.server)
        self.stub = test_grpc.TestServiceStub(self.channel)
        self.on_fatal = on_fatal
        self.last_error_log = 0.0

    def run(self, stop):
        interval = 1.0 / self.args.qps
        next_at = time.monotonic()
        while not stop.is_set():
            for method in self.args.rpc:
                self.send(method)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            else:
                next_at = time.monotonic()  # fell behind: do not burst to catch up

    def send(self, method):
        watchers = self.stats.start_rpc(method)
        kwargs = {"timeout": self.args.rpc_timeout_sec, "metadata": self.args.metadata[method]}
        try:
            if method == "UnaryCall":
                call = self.stub.UnaryCall.future(
                    self.messages.SimpleRequest(fill_server_id=True), **kwargs
                )
            else:
                call = self.stub.EmptyCall.future(self.empty.Empty(), **kwargs)
        except Exception as e:  # noqa: BLE001 - any failure to start is a failed RPC
            self.failed(method, watchers, grpc.StatusCode.UNKNOWN, repr(e))
            return
        call.add_done_callback(lambda f: self.done(method, watchers, f))

    def done(self, method, watchers, call):
        try:
            response = call.result()
        except grpc.RpcError as e:
            code = e.code() if callable(getattr(e, "code", None)) else grpc.StatusCode.UNKNOWN
            details = e.details() if callable(getattr(e, "details", None)) else repr(e)
            self.failed(method, watchers, code or grpc.StatusCode.UNKNOWN, details)
            return
        except Exception as e:  # noqa: BLE001 - e.g. cancelled at exit
            self.failed(method, watchers, grpc.StatusCode.UNKNOWN, repr(e))
            return
        hostname = ""
        for key, value in call.initial_metadata() or ():
            if key == "hostname":
                hostname = value
                break
        if not hostname and method == "UnaryCall":
            hostname = response.hostname
        self.stats.finish_rpc(method, watchers, grpc.StatusCode.OK, hostname)
        if hostname:
            SUCCEEDED.set()
        if self.args.print_response:
            if method == "UnaryCall":
                print(f"Greeting: Hello world, this is {hostname}", flush=True)
            else:
                print(f'RPC "EmptyCall", from host {hostname}', flush=True)

    def failed(self, method, watchers, code, details):
        self.stats.finish_rpc(method, watchers, code, "")
        now = time.monotonic()
        if now - self.last_error_log >= 1.0:  # at most one line a second per channel
            self.last_error_log = now
            log(f"channel {self.index}: {method} failed: {code.name}: {details}")
        self.on_fatal(f"{method} failed ({code.name}: {details})")



def main(argv):
    args = parse_args(argv)
    stubs = load_stubs(args.proto_dir)
    _, messages, _, test_grpc = stubs
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    stats = Stats()
    stop = threading.Event()
    exit_code = [0]

    def on_fatal(why):
        if args.fail_on_failed_rpc and SUCCEEDED.is_set() and not stop.is_set():
            log(f"--fail_on_failed_rpc: an RPC failed after one succeeded: {why}")
            exit_code[0] = 1
            stop.set()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    test_grpc.add_LoadBalancerStatsServiceServicer_to_server(
        make_stats_servicer(stats, messages, test_grpc), server
    )
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = 0
    for host in ("127.0.0.1", "[::1]"):
        try:
            bound += server.add_insecure_port(f"{host}:{args.stats_port}") > 0
        except RuntimeError:
            pass
    if not bound:
        log(f"cannot bind the stats port {args.stats_port} on loopback")
        return 2
    server.start()
    log(
        f"grpcio {grpc.__version__}: stats on port {args.stats_port}; sending {args.rpc} to "
        f"{args.server} at {args.qps} qps on {args.num_channels} channel(s)"
    )

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    senders = [Sender(i, args, stats, stubs, on_fatal) for i in range(args.num_channels)]
    threads = [
        threading.Thread(target=s.run, args=(stop,), name=f"sender-{s.index}", daemon=True)
        for s in senders
    ]
    for t in threads:
        t.start()
    while not stop.wait(0.5):
        pass
    for t in threads:
        t.join(timeout=2)
    server.stop(grace=0)
    for s in senders:
        s.channel.close()
    return exit_code[0]


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # do not wait on gRPC's threads
