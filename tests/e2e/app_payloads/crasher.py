"""An app instance for the e2e tests that exits with code 3 at once: a crash loop."""

import sys

print("crashing", flush=True)
sys.exit(3)
