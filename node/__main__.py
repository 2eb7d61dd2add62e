"""python -m hashfed.node: the hashfed command line."""

from hashfed.node.cli import main

main()
