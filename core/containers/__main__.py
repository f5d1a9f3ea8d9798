"""`python -m medpipes.core.containers`: the entrypoint of every pipeline image."""

import sys

from medpipes.core.containers.entrypoint import main

sys.exit(main())
