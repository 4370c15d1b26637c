"""Is this process in a network namespace that has only the loopback interface?

The real API server calls admission webhooks at Service ClusterIPs and kwok gives Pods addresses
outside 127.0.0.0/8; on a host with real interfaces that traffic could leave the machine. In a
namespace with only `lo`, such connections fail at once ("network is unreachable").

The interfaces are read from ``/proc/self/net/dev``, which always shows the reading process's
own network namespace. (``/sys/class/net`` shows the namespace sysfs was mounted in, so after
`unshare --net` without a new sysfs mount it still lists the host's interfaces.)
"""

from __future__ import annotations

from pathlib import Path

PROC_NET_DEV = Path("/proc/self/net/dev")
LOOPBACK = "lo"


def interfaces(proc_net_dev: Path = PROC_NET_DEV) -> list[str]:
    """Names of every network interface in this process's network namespace, sorted."""
    names: list[str] = []
    for line in proc_net_dev.read_text().splitlines()[2:]:  # two header lines
        name, sep, _counters = line.partition(":")
        if sep and name.strip():
            names.append(name.strip())
    return sorted(names)


def non_loopback_interfaces(proc_net_dev: Path = PROC_NET_DEV) -> list[str]:
    """Every interface but ``lo`` (a namespace's loopback is always named ``lo``)."""
    return [name for name in interfaces(proc_net_dev) if name != LOOPBACK]


def loopback_only_reason(proc_net_dev: Path = PROC_NET_DEV) -> str | None:
    """None in a loopback-only namespace, else why not (naming the other interfaces)."""
    try:
        others = non_loopback_interfaces(proc_net_dev)
    except OSError as exc:
        return f"cannot read {proc_net_dev}: {exc}"
    if not others:
        return None
    return (
        f"this network namespace has interfaces besides loopback ({', '.join(others[:8])}); "
        "run inside `unshare --net` (then `ip link set lo up`) or pass --allow-host-network"
    )
