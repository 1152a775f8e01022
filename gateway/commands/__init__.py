"""Sub-commands of `tgw`, one module per group."""
