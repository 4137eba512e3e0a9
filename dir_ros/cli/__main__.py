"""``python -m dir_ros.cli ...`` (and ``torchrun -m dir_ros.cli train ...``): the ``dir-ros``
console script from a source checkout (a package runs as a script through its __main__)."""
import sys

from dir_ros.cli import main

sys.exit(main())
