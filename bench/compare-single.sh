#!/usr/bin/env bash
# Side by side, one run: a single-member etcd 3.4 (Debian's etcd-server, fsync on)
# and a single-member stead (release build), both on ephemeral loopback ports,
# driven by the same stead-bench workloads over etcd's JSON gateway, in
# alternation. Prints stead/etcd ratios (throughput: higher is better for stead;
# latency: lower is better) and each server's RSS.
#
#   bench/compare-single.sh [--total N]
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL=${TOTAL:-5000}
[ "${1:-}" = "--total" ] && TOTAL=$2

if ! command -v etcd >/dev/null 2>&1; then
  echo "installing etcd-server (Debian)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
cargo build --release --bin stead --bin stead-bench >&2

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

EP=$(free_port); EPP=$(free_port); SP=$(free_port)
etcd --name default --data-dir "$tmp/etcd" \
  --listen-client-urls "http://127.0.0.1:$EP" --advertise-client-urls "http://127.0.0.1:$EP" \
  --listen-peer-urls "http://127.0.0.1:$EPP" --initial-advertise-peer-urls "http://127.0.0.1:$EPP" \
  --initial-cluster "default=http://127.0.0.1:$EPP" >"$tmp/etcd.log" 2>&1 &
ETCD_PID=$!; pids+=("$ETCD_PID")
target/release/stead --data-dir "$tmp/stead" --listen-client-urls "http://127.0.0.1:$SP" >"$tmp/stead.log" 2>&1 &
STEAD_PID=$!; pids+=("$STEAD_PID")

for port in "$EP" "$SP"; do
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

bench() { # endpoint, args...
  local ep=$1; shift
  target/release/stead-bench --endpoints "127.0.0.1:$ep" --total "$TOTAL" --json "$@"
}
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }

printf '%-34s %12s %12s %8s %10s %10s %8s\n' workload "etcd req/s" "stead req/s" ratio "etcd p99" "stead p99" ratio
run_workload() { # name, args...
  local name=$1; shift
  local e s ert srt ep99 sp99
  # Alternate to spread machine noise over both servers: etcd, stead, etcd, stead.
  e=$(bench "$EP" "$@"); s=$(bench "$SP" "$@")
  e2=$(bench "$EP" "$@"); s2=$(bench "$SP" "$@")
  ert=$(python3 -c "import json; a,b=json.loads('$e'),json.loads('$e2'); print(round((a['requests_per_second']+b['requests_per_second'])/2,1))")
  srt=$(python3 -c "import json; a,b=json.loads('$s'),json.loads('$s2'); print(round((a['requests_per_second']+b['requests_per_second'])/2,1))")
  ep99=$(python3 -c "import json; a,b=json.loads('$e'),json.loads('$e2'); print(round((a['p99_ms']+b['p99_ms'])/2,3))")
  sp99=$(python3 -c "import json; a,b=json.loads('$s'),json.loads('$s2'); print(round((a['p99_ms']+b['p99_ms'])/2,3))")
  printf '%-34s %12s %12s %8s %10s %10s %8s\n' "$name" "$ert" "$srt" \
    "$(python3 -c "print(f'{$srt/$ert:.2f}x')")" "$ep99" "$sp99" "$(python3 -c "print(f'{$sp99/$ep99:.2f}x')")"
}

run_workload "put, 1 client"                  --clients 1 put --key-space-size 1000
run_workload "put, 64 clients"                --clients 64 put --key-space-size 100000
run_workload "range linearizable, 1 client"   --clients 1 range bench-key --consistency l
run_workload "range linearizable, 64 clients" --clients 64 range bench-key --consistency l
run_workload "range serializable, 64 clients" --clients 64 range bench-key --consistency s

rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
echo "RSS after the run: etcd $(rss "$ETCD_PID") KiB, stead $(rss "$STEAD_PID") KiB"
