"""What importing parts of training/ costs: the data side and the command list need no TensorFlow.
(Cycles and layering across every package: tests/test_architecture.py.)"""

import subprocess
import sys


def test_the_data_side_and_the_command_registration_need_no_tensorflow():
    """The dataset, its exploration report and the sorting figures are NumPy (bench/ reads the images
    too), and the console script loads training.cli to list the commands (for --help too)."""
    heavy = ("tensorflow", "keras", "matplotlib")
    probe = (
        "import sys, training.cli, training.data, training.explore, training.sorting; "
        f"print([m for m in {heavy} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
