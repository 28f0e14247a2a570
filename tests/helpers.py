"""Shared test constants (the tests folder is on sys.path under pytest)."""

# Narrow widths keep the paper's structure but make CPU tests quick.
TINY = {
    "ppm_bin_channels": 8,
    "ppm_channels": 16,
    "top_channels": 16,
    "mid_channels": 8,
    "high_channels": 8,
    "aux_channels": 8,
}
