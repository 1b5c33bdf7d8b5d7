"""``python -m oxnet.pacs``: see :mod:`oxnet.pacs`."""

import sys

from oxnet.pacs import main

if __name__ == "__main__":
    sys.exit(main())
