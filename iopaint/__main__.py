import sys

from iopaint.cli import main

sys.exit(main())
