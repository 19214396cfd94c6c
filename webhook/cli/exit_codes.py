"""Exit codes of `chaos-registry` (README "The offline CLI"): 0 done; 1 bad input, output that
cannot be written, or `serve` unable to start; 2 usage; 3 an internal error (a bug)."""

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
