"""Where the repository's pieces are, for tests in any folder under tests/."""

import os

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
FIXTURES = os.path.join(TESTS, "fixtures")
EXAMPLES = os.path.join(ROOT, "examples")
