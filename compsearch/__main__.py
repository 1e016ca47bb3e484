"""``python -m compsearch`` is the ``compsearch`` command."""

from .cli import main

main()
