import sys

from convnet.cli import console

sys.exit(console())
