"""``python -m cli``: the ``jumpsync`` command, without the installed script."""

from cli.main import main

main()
