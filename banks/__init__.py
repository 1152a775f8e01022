"""Bank dialects: one module per bank plus the standard dialect, and the explicit registry."""
