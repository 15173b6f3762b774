import sys

from rossby.cli import main

sys.exit(main())
