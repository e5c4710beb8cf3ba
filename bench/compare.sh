#!/usr/bin/env bash
# Side by side, one run: an etcd 3.4 cluster (Debian's etcd-server, fsync on) and
# a stead cluster (release build) of the same size, both on ephemeral loopback
# ports, driven by the same stead-bench workloads over etcd's JSON gateway, in
# alternation (clients spread over every member's endpoint). Prints stead/etcd
# ratios (throughput: higher is better for stead; latency: lower is better) and
# the servers' RSS.
#
#   bench/compare.sh [--members 1|3] [--total N]
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL=${TOTAL:-5000}
MEMBERS=${MEMBERS:-1}
while [ $# -gt 0 ]; do
  case "$1" in
    --total) TOTAL=$2; shift 2 ;;
    --members) MEMBERS=$2; shift 2 ;;
    *) echo "usage: $0 [--members N] [--total N]" >&2; exit 2 ;;
  esac
done

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

# Starts an N-member cluster of `bin` (etcd or stead: same flags); prints the
# comma-separated client endpoints and records PIDs.
start_cluster() { # name-prefix, bin
  local prefix=$1 bin=$2 initial="" cports=() pports=() i
  for i in $(seq 1 "$MEMBERS"); do
    cports+=("$(free_port)"); pports+=("$(free_port)")
    initial+="${initial:+,}$prefix$i=http://127.0.0.1:${pports[$((i-1))]}"
  done
  for i in $(seq 1 "$MEMBERS"); do
    local cp=${cports[$((i-1))]} pp=${pports[$((i-1))]}
    "$bin" --name "$prefix$i" --data-dir "$tmp/$prefix$i" \
      --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
      --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
      --initial-cluster "$initial" --initial-cluster-token "$prefix-bench" >"$tmp/$prefix$i.log" 2>&1 &
    echo $! >>"$tmp/$prefix.pids"
  done
  local eps=""
  for cp in "${cports[@]}"; do eps+="${eps:+,}127.0.0.1:$cp"; done
  echo "$eps"
}

ETCD_EPS=$(start_cluster etcd etcd)
STEAD_EPS=$(start_cluster stead target/release/stead)
while read -r p; do pids+=("$p"); done < <(cat "$tmp/etcd.pids" "$tmp/stead.pids")

for ep in ${ETCD_EPS//,/ } ${STEAD_EPS//,/ }; do
  for _ in $(seq 1 200); do
    curl -sf "http://$ep/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

bench() { # endpoints, args...
  local eps=$1; shift
  target/release/stead-bench --endpoints "$eps" --total "$TOTAL" --json "$@"
}
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }

echo "members: $MEMBERS" >&2
printf '%-34s %12s %12s %8s %10s %10s %8s\n' workload "etcd req/s" "stead req/s" ratio "etcd p99" "stead p99" ratio
run_workload() { # name, args...
  local name=$1; shift
  local e s ert srt ep99 sp99
  # Alternate to spread machine noise over both servers: etcd, stead, etcd, stead.
  e=$(bench "$ETCD_EPS" "$@"); s=$(bench "$STEAD_EPS" "$@")
  e2=$(bench "$ETCD_EPS" "$@"); s2=$(bench "$STEAD_EPS" "$@")
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

rss_sum() { local sum=0 p; while read -r p; do sum=$((sum + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done <"$1"; echo $sum; }
echo "members: $MEMBERS; requests per run: $TOTAL"
echo "RSS after the run (all members): etcd $(rss_sum "$tmp/etcd.pids") KiB, stead $(rss_sum "$tmp/stead.pids") KiB"
