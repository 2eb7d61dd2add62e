"""Storage: every SQL statement the node executes, behind small repository functions."""
