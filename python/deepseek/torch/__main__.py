"""``python -m deepseek.torch program.py [args]``: runs a torch-style program on ds, with
``import torch`` answered by deepseek.torch when PyTorch is not installed."""
import os
import runpy
import sys

from ..torch_compat import install_import_hook

if len(sys.argv) < 2:
    sys.exit("usage: python -m deepseek.torch program.py [args...]")
install_import_hook()
sys.argv = sys.argv[1:]
# As `python program.py` would: the program's folder first on the import path.
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
