"""`python -m Utils.tools.model_import --help`: see cli.py."""
import sys

from .cli import main

sys.exit(main())
