"""The seed's stop messages, word for word."""

NO_TRACE_DATA = "No trace data available in aos_traces."
NO_STEPS = "Trace exists but has no steps."
