"""Where a sweep runs: this machine or a running Ray cluster, what it has and whether every node
sees the storage (connect), and `orch validate-cluster` (launcher).

May import: records (storage URIs)."""
