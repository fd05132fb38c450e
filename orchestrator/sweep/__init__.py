"""Running sweeps: a command's settings checked into a `SweepRequest` (request), run by Ray Tune
with Optuna proposing configurations (run, space, searchers), one trial per Tune trial through
the Tune adapter (trainable), continued after a crash or a signal (resume, interrupt,
preconditions), and several sweeps in a row (campaign: reproduce, benchmark).

May import: tracking, records, cluster, report, trainables, search_spaces."""
