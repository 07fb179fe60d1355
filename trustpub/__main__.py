import sys

from trustpub.cli import main

sys.exit(main())
