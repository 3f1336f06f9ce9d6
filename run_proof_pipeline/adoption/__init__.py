"""Working on a trace store that AOS created: the upgrade check, adoption of legacy traces,
retirement of runs, and counting the kinds of traces side by side."""
