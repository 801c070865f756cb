"""The bench on a machine with more cores that is offline and has no broker (docs/PERFORMANCE.md: a 16-vCPU
Xeon with AMX): pack a bundle here, unpack it and run (a), (b) and (g) and the accuracy gates there."""
