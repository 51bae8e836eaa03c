"""One thin module per dvc.yaml stage, named like the stage: parse paths, call the library.

Importing this package pins OpenBLAS's kernels (unless `OPENBLAS_CORETYPE` is already set),
before any stage imports numpy: OpenBLAS picks its kernels by CPU (AVX2 on one machine,
AVX-512 on another), and the last bits of a fitted model, and so the bytes of every output
after it, differ with them. Haswell's AVX2 kernels run on every x86-64 CPU made since 2013,
Intel's and AMD's, so one commit and lock file give the same bytes on all of them.
"""

import os

os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")
