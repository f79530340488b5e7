import sys

from modelway.cli import main

sys.exit(main())
