"""The real executor: plan → apply → wait (or check) on one cluster, reported as events.

`kit_executor.KitExecutor` is the `ClusterExecutor` every mesh adapter runs with; each kind of
work is its own action over one `cluster_work.ClusterWork` (`validating`, `installing`,
`uninstalling`, `previewing`); nothing here knows which mesh it runs.
"""
