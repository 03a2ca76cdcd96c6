"""pytest set-up: absl flags must count as parsed for the TFDS test cases.

Under pytest no `absltest.main()` parses the flags, and the temp-dir helpers of
`tf.test.TestCase` read `--test_tmpdir`; marking the flags parsed gives them
their defaults.
"""

from absl import flags

if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()
