"""``python -m bench``: the benchmark harness is the subject of its own issue and not built yet."""

import sys

sys.exit("bench: not implemented yet; see bench/README.md")
