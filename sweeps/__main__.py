"""``python -m sweeps`` is ``unlearn-sweep``."""

from sweeps.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
