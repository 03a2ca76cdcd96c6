"""Apache Beam pipelines (need the `beam` extra: `pip install cabb_tf[beam]`).

* `similarity_beam` — the category similarity of Eq. (1)–(2) at scale.

Modules are imported by name, so `import cabb_tf.pipelines` works without Beam.
"""
