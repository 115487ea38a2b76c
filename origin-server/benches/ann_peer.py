"""hnswlib, the peer of the ANN benchmark (origin-server/benches/ann.rs).

The benchmark starts this script in a virtualenv that has hnswlib, and drives it
over stdin/stdout, one JSON object per line, so that the two libraries are
measured in alternating turns of one run rather than side by side.

    python3 ann_peer.py BASE.f32 QUERIES.f32 DIM M EF_CONSTRUCTION BUILD_THREADS

BASE.f32 and QUERIES.f32 hold raw little-endian float32 rows. The index is built
with the inner-product space (the vectors are normalised, so this is cosine),
with `BUILD_THREADS` threads; then every search runs on one thread. The script
prints {"built_s": ...} and then answers each {"ef": N, "k": K} line with
{"ef": N, "seconds": ..., "labels": [[...], ...]}: the wall time of one batch
call over all queries (hnswlib's C++ loop, so no Python overhead per query)
and the row numbers of the hits. An empty line or end of input stops it.
"""

import json
import sys
import time

import hnswlib
import numpy as np


def main():
    base_path, query_path, dim, m, ef_construction, threads = sys.argv[1:7]
    dim, m, ef_construction, threads = int(dim), int(m), int(ef_construction), int(threads)
    base = np.fromfile(base_path, dtype="<f4").reshape(-1, dim)
    queries = np.fromfile(query_path, dtype="<f4").reshape(-1, dim)

    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=len(base), M=m, ef_construction=ef_construction, random_seed=100)
    index.set_num_threads(threads)
    start = time.perf_counter()
    index.add_items(base, np.arange(len(base)))
    print(json.dumps({"built_s": time.perf_counter() - start, "version": hnswlib.__version__ if hasattr(hnswlib, "__version__") else "unknown"}), flush=True)

    index.set_num_threads(1)
    for line in sys.stdin:
        if not line.strip():
            break
        cmd = json.loads(line)
        k = int(cmd["k"])
        index.set_ef(max(int(cmd["ef"]), k))
        start = time.perf_counter()
        labels, _ = index.knn_query(queries, k=k, num_threads=1)
        seconds = time.perf_counter() - start
        print(json.dumps({"ef": cmd["ef"], "seconds": seconds, "labels": labels.tolist()}), flush=True)


if __name__ == "__main__":
    main()
