"""`python -m harness.faults`: the fault catalogue's detection table (harness/faults/runner.py)."""
import sys

from harness.faults.runner import main

sys.exit(main())
