"""The math of docs/model.md and its variants, in NumPy (and Numba) only: no pyspark import.

``objective`` describes a variant as data; ``normal``, ``solvers``, ``nnls`` and ``kernel``
build and solve the rows' systems; ``block.solve_block`` is the one half-step of a block;
``packing`` is the byte encoding of the partitioned ratings; ``state``, ``local`` and
``reference`` hold and fit models in memory; ``topn`` ranks items for a few users.
"""
