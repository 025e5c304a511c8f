import sys

from mdsr.cli import main

sys.exit(main())
