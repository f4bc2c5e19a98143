import sys

from kws.cli import main

sys.exit(main())
