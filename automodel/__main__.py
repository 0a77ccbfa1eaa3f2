import sys

from automodel.cli.commands import main

sys.exit(main())
