"""``python -m sweeps.compare JOB``: one method's driver of a comparison (``sweeps.compare.driver``)."""

import os
import sys

from sweeps.compare.driver import main

if __name__ == "__main__":
    code = main()
    # Its sweep is written and closed, its outcome said: leave without the interpreter's and Ray's exit
    # handlers (the driver's disconnect and teardown took seconds while the comparison waited on it). The
    # cluster treats the ended driver as it does a killed one, which a comparison survives anyway.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
