"""Parquet, the sweep's long-format records: the schema (parquet), what a trial's Tune results
mean (results), the driver-side recorder callback (recorder), and Tune's storage (storage).

May import: trainables only (the bottom of the control plane)."""
