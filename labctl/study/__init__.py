"""Studies: many emulated runs (grids or random samples over chip and procedure parameters) on Dask."""
