import sys

from sidkernels.cli import main

sys.exit(main())
