#!/usr/bin/env bash
# Side-by-side check that steadctl prints what etcdctl 3.4.23 prints.
#
#   scripts/compare-etcdctl.sh                       # starts two throwaway etcds (steadctl vs etcdctl)
#   scripts/compare-etcdctl.sh --stead STEAD_EP      # throwaway etcd for etcdctl, STEAD_EP for steadctl
#   scripts/compare-etcdctl.sh ETCD_EP STEAD_EP      # both given (may be the same endpoint)
#   scripts/compare-etcdctl.sh --stead-bin [PATH]    # throwaway etcd + throwaway stead server
#                                                    # (PATH defaults to target/debug/stead)
#
# The same command list runs with `etcdctl --endpoints=ETCD_EP` and with
# `steadctl --endpoints=STEAD_EP`; stdout, stderr and exit code of every command
# are compared after normalising only what must differ: cluster/member ids,
# raft term/index, db sizes, durations, log timestamps and client UUIDs, the
# endpoint address, the program name, and revisions (taken relative to the
# revision each run starts at, so the servers need not share a history and may
# even be the same server). Keys live under "~cmp/", which each run deletes first.
#
# Env: ETCDCTL (default: etcdctl), STEADCTL (default: target/debug/steadctl,
# built if missing), KEEP=1 keeps the output directory. Exit 1 on any difference.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ETCDCTL=${ETCDCTL:-etcdctl}
STEADCTL=${STEADCTL:-$ROOT/target/debug/steadctl}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/compare-etcdctl.XXXXXX")
# Servers are started inside $(…) subshells, so their pids go to a file.
PIDS="$WORK/started.pids"

cleanup() {
    local pid
    if [[ -f "$PIDS" ]]; then
        while read -r pid; do
            kill "$pid" 2>/dev/null
        done <"$PIDS"
        sleep 0.2
        while read -r pid; do
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
        done <"$PIDS"
    fi
    if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$WORK"; else echo "outputs kept in $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 20000))
}

# Start a single-member etcd (or stead, which takes etcd's flags) on ephemeral
# loopback ports; prints its client endpoint.
start_etcd() {
    local name=$1 bin=${2:-etcd} cport pport dir
    cport=$(free_port); pport=$(free_port)
    dir="$WORK/$name.data"
    "$bin" --name "$name" --data-dir "$dir" \
        --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
        --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "$name=http://127.0.0.1:$pport" >"$WORK/$name.log" 2>&1 &
    echo $! >>"$PIDS"
    for _ in $(seq 1 100); do
        # Ready when the JSON gateway answers (stead may not speak gRPC yet).
        if "$STEADCTL" --endpoints="127.0.0.1:$cport" --command-timeout=1s endpoint health >/dev/null 2>&1; then
            echo "127.0.0.1:$cport"; return 0
        fi
        sleep 0.1
    done
    echo "$bin $name did not start; see $WORK/$name.log" >&2
    cat "$WORK/$name.log" >&2
    return 1
}

if [[ ! -x "$STEADCTL" ]]; then
    (cd "$ROOT" && cargo build --bin steadctl) || exit 2
fi

case "${1:-}" in
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    "") ETCD_EP=$(start_etcd etcd-a) || exit 2; STEAD_EP=$(start_etcd etcd-b) || exit 2 ;;
    --stead-bin) ETCD_EP=$(start_etcd etcd-a) || exit 2
        STEAD_EP=$(start_etcd stead-b "${2:-$ROOT/target/debug/stead}") || exit 2 ;;
    --stead) [[ -n "${2:-}" ]] || { echo "usage: $0 --stead STEAD_ENDPOINT" >&2; exit 2; }
        ETCD_EP=$(start_etcd etcd-a) || exit 2; STEAD_EP=$2 ;;
    *) [[ -n "${2:-}" ]] || { echo "usage: $0 ETCD_ENDPOINT STEAD_ENDPOINT" >&2; exit 2; }
        ETCD_EP=$1; STEAD_EP=$2 ;;
esac


# ---------------------------------------------------------------------------
# The command list. `c MODE NAME [--stdin TEXT] -- ARGS…` runs one command with
# $TOOL/$EP; MODE is: full (stdout+stderr+rc), err (stderr+rc: cobra's usage on
# stdout differs in program name and layout), rc (exit code only: protobuf).
# $B is the revision this run started at; write revisions as $((B+n)).
P='~cmp'
cases() {
    c full put-simple -- put $P/a 1
    c full put-json -- put $P/b 2 -w json
    c full put-fields -- put $P/c 3 -w fields
    c full put-prev -- put $P/a 11 --prev-kv
    c full put-prev-json -- put $P/a 12 --prev-kv -w json
    c full put-prev-fields -- put $P/a 13 --prev-kv=true -w fields
    c full put-stdin --stdin $'from stdin\n' -- put $P/stdin
    c full put-stdin-empty --stdin '' -- put $P/nostdin
    c full put-dashdash -- put -- $P/dash -value
    c full put-unicode -- put $P/u "héllo ☃ \"q\""
    c full put-empty-key -- put "" v
    c full put-ignore-value -- put $P/b --ignore-value
    c full put-ignore-value-missing -- put $P/missing --ignore-value
    c full put-ignore-value-arg -- put $P/b x --ignore-value
    c full put-bad-lease -- put $P/a v --lease=zz
    c full put-missing-lease -- put $P/a v --lease=1234
    c full put-ignore-lease -- put $P/c 33 --ignore-lease
    c full put-noargs -- put
    c full put-protobuf-table -- put $P/t 1 -w table
    c err put-unknown-flag -- put $P/a 1 --badflag
    c err put-short-flag -- put $P/a -v

    for w in simple json fields; do
        c full get-one-$w -- get $P/a -w $w
        c full get-missing-$w -- get $P/missing -w $w
        c full get-prefix-$w -- get --prefix $P/ -w $w
        c full get-limit-$w -- get --prefix $P/ --limit=2 -w $w
        c full get-keys-only-$w -- get --prefix $P/ --keys-only -w $w
        c full get-range-$w -- get $P/a $P/c -w $w
        c full get-rev-$w -- get $P/a --rev=$((B+2)) -w $w
        c full get-future-rev-$w -- get $P/a --rev=$((B+1000)) -w $w
    done
    c full get-print-value-only -- get --prefix $P/ --print-value-only
    c full get-print-value-only-json -- get --prefix $P/ --print-value-only -w json
    c full get-sort-mod-desc -- get --prefix $P/ --sort-by=MODIFY --order=DESCEND
    c full get-sort-value -- get --prefix $P/ --sort-by=value
    c full get-sort-create-desc -- get --prefix $P/ --sort-by=create --order=descend -w json
    c full get-sort-version -- get --prefix $P/ --sort-by=VERSION --order=DESCEND
    c full get-order-asc -- get --prefix $P/ --order=ASCEND --limit 3
    c full get-sort-key-desc-limit -- get --prefix $P/ --order=DESCEND --limit=2 -w json
    c full get-from-key -- get --from-key $P/c
    c full get-from-key-keys -- get --from-key $P/b --keys-only --limit=0x2
    c full get-serializable -- get $P/a --consistency=s
    c full get-hex -- get $P/u --hex
    c full get-hex-prefix -- get --prefix $P/ --hex --limit=2
    c full get-table -- get $P/a -w table
    c rc   get-protobuf -- get $P/a -w protobuf
    c full get-bad-format -- get $P/a -w xml
    c full get-bad-consistency -- get $P/a --consistency=x
    c full get-bad-sort -- get $P/a --sort-by=x
    c full get-bad-order -- get $P/a --order=x
    c full get-prefix-and-from-key -- get $P/a --prefix --from-key
    c full get-prefix-two-args -- get $P/a $P/b --prefix
    c full get-noargs -- get
    c err get-bad-limit -- get $P/a --limit=abc
    c err get-bad-bool -- get $P/a --prefix=yes
    c err get-bad-timeout -- get $P/a --command-timeout=abc
    c err get-missing-value -- get $P/a --limit

    c full del-one -- del $P/dash
    c full del-missing-json -- del $P/missing -w json
    c full del-prefix-prev -- del --prefix $P/s --prev-kv
    c full put-for-del -- put $P/x1 1
    c full put-for-del2 -- put $P/x2 2
    c full del-prev-json -- del $P/x1 --prev-kv -w json
    c full del-prev-fields -- del $P/x2 --prev-kv -w fields
    c full del-range -- del $P/nothing $P/nothinh
    c full del-two-args-prefix -- del $P/a $P/b --prefix
    c full del-noargs -- del
    c full del-three-args -- del a b c
    c full del-prefix-and-from-key -- del $P/a --prefix --from-key

    local cmp_ok="value(\"$P/a\") = \"13\""
    local txn1="$cmp_ok"$'\n'"mod(\"$P/b\") > \"0\""$'\n\n'"put $P/a 14"$'\n'"get $P/ --prefix --limit=2"$'\n'"del $P/u --prev-kv"$'\n'"put $P/t2 v --prev-kv"$'\n\n'"get $P/a"$'\n\n'
    c full txn-success --stdin "$txn1" -- txn
    local txn2="value(\"$P/a\") = \"nope\""$'\n\n'"put $P/a 15"$'\n\n'"get $P/a"$'\n'"get $P/zz"$'\n'"put $P/t3 x"$'\n\n'
    for w in simple json fields; do
        c full txn-failure-$w --stdin "$txn2" -- txn -w $w
    done
    c full txn-interactive --stdin "$txn2" -- txn -i
    c full txn-empty --stdin $'\n\n\n' -- txn -w json
    c full txn-ver-create --stdin "ver(\"$P/a\") = \"3\""$'\n'"c(\"$P/a\") > \"1\""$'\n'"m(\"$P/a\") < \"999999\""$'\n\n'"get $P/a"$'\n\n\n' -- txn
    c full txn-eof --stdin '' -- txn
    c full txn-eof-midway --stdin $'\nget a' -- txn
    c full txn-malformed --stdin $'foo\n' -- txn
    c full txn-malformed-space --stdin $'value("a")= "1"\n' -- txn
    c full txn-unquoted --stdin $'ver(a) = "x"\n' -- txn
    c full txn-bad-int --stdin $'version("a") = "x"\n' -- txn
    c full txn-bad-target --stdin $'zz("a") = "x"\n' -- txn
    c full txn-short-request --stdin $'\nput\n' -- txn
    c full txn-unknown-request --stdin $'\nbogus a\n' -- txn
    c full txn-bad-request-flag --stdin $'\nput a b --bad\n\n\n' -- txn
    c full txn-request-arg-error --stdin $'\nget a b --prefix\n\n\n' -- txn
    c full txn-duplicate --stdin $'\nput '"$P"$'/a 1\nput '"$P"$'/a 2\n\n\n' -- txn
    c full txn-table --stdin $'\n\n\n' -- txn -w table
    c full txn-args -- txn extra
    c full txn-single-quote-bug --stdin $'\nput \''"$P"$'/q\' v\n\n\n' -- txn -w json

    c full compaction -- compaction $((B+3))
    c full compaction-again -- compaction $((B+3))
    c full compaction-future -- compaction $((B+100000))
    c full get-compacted -- get $P/a --rev=$((B+1))
    c full compaction-physical-json -- compaction --physical $((B+5)) -w json
    c full compaction-abc -- compaction abc
    c full compaction-noargs -- compaction

    for w in simple json fields table; do
        c full health-$w -- endpoint health -w $w
        c full status-$w -- endpoint status -w $w
    done
    c full health-protobuf -- endpoint health -w protobuf
    c full unknown-command -- bogus
    c full unknown-command-suggest -- gett
    c full prefix-command -- ge $P/a
    c full ambiguous-command -- e

    # maintenance: no alarm is raised on either server, so lists are empty
    c full alarm-list -- alarm list
    c full alarm-list-json -- alarm list -w json
    c full alarm-list-table -- alarm list -w table
    c full alarm-disarm -- alarm disarm
    c full alarm-list-args -- alarm list extra
    c full defrag -- defrag
    c full snapshot-status-noargs -- snapshot status
    c full snapshot-status-missing -- snapshot status "$WORK/no-such.db"
    c full snapshot-save-noargs -- snapshot save
    c full snapshot-restore-noargs -- snapshot restore
    c full snapshot-restore-bad-name --no-ep -- snapshot restore "$WORK/no-such.db" --name zz
    # stderr carries zap log lines (timestamps, callers): compare exit codes
    c rc snapshot-save -- snapshot save "$WORK/saved.db"
    c full snapshot-restore-exists --no-ep -- snapshot restore "$WORK/saved.db" --data-dir "$WORK"
    # lock / elect: the forms that end on their own (held locks and elected
    # campaigns wait for a signal; tests/lock_elect.rs covers those)
    c full lock-noargs -- lock
    c full lock-exec -- lock $P/lk -- sh -c 'echo "key=${ETCD_LOCK_KEY%/*} rev=$((ETCD_LOCK_REV - '"$B"'))"'
    c full lock-exec-fails -- lock $P/lk -- sh -c 'exit 3'
    c full lock-exec-missing -- lock $P/lk -- nosuchcommand-stead
    c full lock-exec-env-ttl -- lock --ttl 5 $P/lk -- sh -c 'test -n "$ETCD_LOCK_KEY" && echo held'
    c full lock-released -- get --prefix $P/lk
    c err lock-bad-ttl -- lock --ttl=abc $P/lk
    c full elect-noargs -- elect
    c full elect-no-proposal -- elect $P/el
    c full elect-listen-and-proposal -- elect -l $P/el p
    c full elect-too-many -- elect $P/el p q
    c full watch-interactive-eof -- watch -i
    c full watch-interactive-bad-flag --stdin $'watch --rev=x k\n' -- watch -i
    c full watch-interactive-skips --stdin $'bogus\n\nwatch\nwatch a b --prefix\n' -- watch -i
    c full watch-exec-no-command -- watch $P/a --

    # an unreachable endpoint (127.0.0.1:1): fail-over, then the deadline path
    c full failover-get -- get $P/a --endpoints=127.0.0.1:1
    c full failover-put -- put $P/a 16 --endpoints=127.0.0.1:1
    c full dead-get --no-ep -- get $P/a --endpoints=127.0.0.1:1 --command-timeout=500ms
    c full dead-health --no-ep -- endpoint health --endpoints=127.0.0.1:1 --command-timeout=500ms -w json
    c full dead-status --no-ep -- endpoint status --endpoints=127.0.0.1:1 --command-timeout=500ms
    c full mixed-health -- endpoint health --endpoints=127.0.0.1:1 --command-timeout=500ms
    c full mixed-status -- endpoint status --endpoints=127.0.0.1:1 --command-timeout=500ms -w fields
    c full http-endpoint --no-ep -- get $P/a --endpoints=http://$EP
}
# ---------------------------------------------------------------------------

run_all() { # TOOL EP OUTDIR
    TOOL=$1; EP=$2; OUT=$3; mkdir -p "$OUT"
    "$ETCDCTL" --endpoints="$EP" del --prefix "$P/" >/dev/null 2>&1
    B=$("$TOOL" --endpoints="$EP" put "$P/base" x -w json 2>/dev/null | grep -o '"revision":[0-9]*' | head -1 | cut -d: -f2)
    if [[ -z "$B" ]]; then echo "cannot read the start revision from $EP with $TOOL" >&2; return 1; fi
    N=0
    cases
}

c() { # MODE NAME [--stdin TEXT] [--no-ep] -- ARGS...
    local mode=$1 name=$2 stdin="" has_stdin=0 eps=("--endpoints=$EP"); shift 2
    if [[ "$1" == --stdin ]]; then stdin=$2; has_stdin=1; shift 2; fi
    if [[ "$1" == --no-ep ]]; then eps=(); shift; fi
    [[ "$1" == -- ]] && shift
    N=$((N + 1))
    local f; f=$(printf '%s/%03d-%s' "$OUT" "$N" "$name")
    if [[ $has_stdin == 1 ]]; then
        printf '%s' "$stdin" | "$TOOL" "${eps[@]}" "$@" >"$f.out" 2>"$f.err"
    else
        "$TOOL" "${eps[@]}" "$@" >"$f.out" 2>"$f.err" </dev/null
    fi
    echo "rc=$?" >"$f.rc"
    echo "$mode" >"$f.mode"
    echo "$*" >"$f.cmd"
    normalise "$f" "$EP" "$B"
}

normalise() { # FILE-PREFIX ENDPOINT BASE
    local f=$1 ep=$2 base=$3 part
    for part in out err; do
        EP="$ep" BASE="$base" perl -pe '
            BEGIN { $ep = quotemeta($ENV{EP}); $b = $ENV{BASE}; }
            s/$ep/<EP>/g;
            s/\b(etcdctl)\b/CTL/g; s/\bsteadctl\b/CTL/g;
            # steadctl prints `Error:  ` (two spaces, the project spec), etcdctl 3.4 one
            s/^Error:  /Error: /;
            # clientv3 retry warnings: etcdctl 3.4 always, steadctl with --debug
            $_ = "" if /"msg":"retrying of unary invoker failed"/;
            s/"ts":"[^"]*"/"ts":"<TS>"/g;
            s/client-[0-9a-f-]{36}/client-<UUID>/g;
            # ids, terms, raft indexes, sizes: differ between servers by nature
            s/("(?:cluster_id|member_id|leader|raft_term|raftTerm|raftIndex|raftAppliedIndex|dbSize|dbSizeInUse)":)\d+/$1<N>/g;
            s/^("(?:ClusterID|MemberID|RaftTerm|Leader|RaftIndex|RaftAppliedIndex|DBSize)" : )\d+/$1<N>/;
            # revisions relative to the run start
            s/("(?:revision|create_revision|mod_revision)":)(\d+)/$1.($2-$b)/ge;
            s/^("(?:Prev)?(?:Revision|CreateRevision|ModRevision)" : )(\d+)/$1.($2-$b)/ge;
            s/^(compacted revision )(\d+)/$1.($2-$b)/ge;
            # durations
            s/took = \S+/took = <DUR>/; s/"took":"[^"]*"/"took":"<DUR>"/g; s/^("Took" : ).*/$1<DUR>/;
            s/\d+(?:\.\d+)?(?:ns|µs|ms|s|m|h)\b/<DUR>/g if /^\|/;
            # endpoint status rows (simple and table): member id, sizes, term and indexes
            s/^(<EP>, )[0-9a-f]+, ([^,]+), [^,]+, (\w+), (\w+), \d+, \d+, \d+,/$1<ID>, $2, <SIZE>, $3, $4, <N>, <N>, <N>,/;
            if (/^\|\s*<EP>\s*\|/) { my @c = split /\|/; @c[2,4,7,8,9] = ("<ID>","<SIZE>","<N>","<N>","<N>") if @c > 9; $_ = join("|", @c); }
            # tables: column widths follow the normalised cells
            if (/^[|+]/) { s/ +/ /g; s/-+/-/g; }
        ' "$f.$part" >"$f.$part.norm" 2>/dev/null || cp "$f.$part" "$f.$part.norm"
    done
}

echo "etcdctl  ($ETCDCTL) -> $ETCD_EP"
echo "steadctl ($STEADCTL) -> $STEAD_EP"
run_all "$ETCDCTL" "$ETCD_EP" "$WORK/etcdctl" || exit 2
run_all "$STEADCTL" "$STEAD_EP" "$WORK/steadctl" || exit 2

fail=0; total=0
for want in "$WORK"/etcdctl/*.rc; do
    base=$(basename "$want" .rc); got="$WORK/steadctl/$base"; want="${want%.rc}"
    total=$((total + 1))
    mode=$(cat "$want.mode")
    parts=(rc)
    [[ $mode == full ]] && parts=(rc out.norm err.norm)
    [[ $mode == err ]] && parts=(rc err.norm)
    for p in "${parts[@]}"; do
        if ! cmp -s "$want.$p" "$got.$p"; then
            [[ $fail == 0 ]] || true
            echo "=== DIFF $base ($p): $(cat "$want.cmd")"
            diff -a -u --label "etcdctl" --label "steadctl" "$want.$p" "$got.$p" | head -40
            fail=$((fail + 1))
        fi
    done
done
if [[ $fail -ne 0 ]]; then
    echo "FAIL: $fail difference(s) over $total commands"
    exit 1
fi
echo "OK: $total commands, steadctl output identical to etcdctl (after normalisation)"
