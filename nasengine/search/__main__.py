"""``python -m nasengine.search RUN_DIR --method NAME [...]``: the generational loop from the shell."""
import sys

from nasengine.search.generational import main

sys.exit(main())
