"""The end-to-end demo behind `make demo` and `clipforge demo`."""
