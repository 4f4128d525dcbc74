import sys

from loadtest.battery.run import main

sys.exit(main())
