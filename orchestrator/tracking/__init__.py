"""MLflow: where it writes (store), a client that survives a server going away (client), the
driver-side logger callback (logger), a sweep's runs (runs), and `orch evaluate` (evaluate).

May import: records, report (its drawing, for a trial's curve figure), trainables."""
