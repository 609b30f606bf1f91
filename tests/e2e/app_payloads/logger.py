"""An app instance for the e2e tests that prints "tick N" to stdout five times a second."""

import itertools
import time

for n in itertools.count():
    print(f"tick {n}", flush=True)
    time.sleep(0.2)
