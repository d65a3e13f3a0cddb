"""srigl-ref: the reference implementation of SRigL in NumPy and Numba."""
