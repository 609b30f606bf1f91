"""An app instance for the e2e tests that takes argv[2] MB of memory, touching every page, then holds it."""

import sys
import time

chunks = [bytearray(1024 * 1024) for _ in range(int(sys.argv[2]))]
for chunk in chunks:
    chunk[::4096] = b"x" * len(chunk[::4096])
print("holding", len(chunks), "MB", flush=True)
time.sleep(3600)
