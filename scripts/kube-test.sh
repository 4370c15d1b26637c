#!/usr/bin/env bash
# Run the `realkube` tests inside a fresh network namespace that has only loopback, so nothing
# the real API server or kwok does (webhook calls to ClusterIPs, fake Pod IPs) can leave the
# machine. Where a namespace cannot be made (not root, no unshare/ip), pytest runs as is and the
# realkube tests skip, saying why.
set -euo pipefail
py=${1:?usage: kube-test.sh PYTHON [PYTEST ARGS OR PATHS...] (default: tests without tests/bench)}
shift
# The benchmarks run only when asked for by path (`make bench` passes tests/bench).
[ $# -gt 0 ] || set -- tests --ignore=tests/bench
# Its own base temp dir (kept until the next run): the control plane's and adapters' logs of a
# failed test survive other pytest runs on the machine.
basetemp="$(pwd)/.tools/kube/test-tmp"
args=(-q -p no:xdist -m realkube --basetemp="$basetemp" "$@")
if command -v unshare >/dev/null && command -v ip >/dev/null && unshare --net true 2>/dev/null; then
  exec unshare --net --fork -- bash -c 'ip link set lo up && exec "$0" -m pytest "$@"' "$py" "${args[@]}"
fi
echo "kube-test: cannot create a network namespace (needs root, unshare and ip); realkube tests will skip" >&2
exec "$py" -m pytest "${args[@]}"
