import sys

from wavlm_live.cli import main

sys.exit(main())
