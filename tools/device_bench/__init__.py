"""The bench on a lent machine with more cores (issue #11): pack a bundle here, unpack and run it there."""
