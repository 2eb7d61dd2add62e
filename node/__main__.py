"""python -m hashfed.node: the hashfed command line."""

from hashfed.node.entry import main

main()
