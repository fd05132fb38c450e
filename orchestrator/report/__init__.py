"""What people read: sweeps loaded from Parquet (load), rankings (ranking), figures registered by
section (figures) drawn with matplotlib (draw), Pareto fronts, latent analyses (latent), the
reproduce table (reproduce), `orch report` (write), and the one HTML writer (html).

May import: records, trainables (to restore a checkpoint for latent analyses). Never ray."""
