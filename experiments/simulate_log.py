r"""Writes a large simulated log as sharded Parquet, in bounded memory.

    python experiments/simulate_log.py --base_dir=/tmp/sim1e7 \
        --gin_bindings='write_sharded_log.num_events = 10000000'

Writes `events/events-00000-of-000NN.parquet` ..., `catalog.parquet`,
`simulate_log.json` (arguments, shards, counts, wall time, peak RSS) and
`config.gin` to `--base_dir` (docs/simulator.md, "A large log as sharded
Parquet"). The block size is `write_sharded_log.chunk_events`; further
simulator arguments are `simulate.<argument>` bindings.
"""

import cabb_tf  # pylint: disable=unused-import  (selects Keras 2 first)
from cabb_tf import gin_utils
from cabb_tf.data import simulate_shards

if __name__ == "__main__":
  gin_utils.run_binary(simulate_shards.write_sharded_log)
