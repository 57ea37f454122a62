import os
import tempfile

# Quiet TensorFlow's C++ start-up chatter in test output; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Whatever builds an app without saying where its decision log goes keeps it out of the repository.
os.environ.setdefault("SORTER_DATA_DIR", tempfile.mkdtemp(prefix="garment-sorter-tests-"))
