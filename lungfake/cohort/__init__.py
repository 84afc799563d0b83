"""A cohort of slides mapped on Dask distributed: each slide exactly as `lungfake slide` maps it, on a LocalCluster or
on a cluster at a scheduler's address, its outputs written as it finishes, and a cohort table.

May import: lungfake.reports and everything below it; only lungfake.cli imports it. Dask is imported here only
(requirements-cohort.txt)."""
