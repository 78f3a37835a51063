"""``python -m nasengine`` is the ``nasengine`` command."""
import sys

from nasengine.cli import main

sys.exit(main())
