"""Tests for cabb_tf.data.category_tree."""

from absl.testing import absltest

from cabb_tf.data import category_tree


class ReadCategoryTreeTest(absltest.TestCase):

  def write(self, text: str) -> str:
    return self.create_tempfile("category_tree.csv", content=text).full_path

  def test_hand_tree_children_before_parents_crlf(self):
    path = self.write("categoryid,parentid\r\n"
                      "3,2\r\n"
                      "6,5\r\n"
                      "2,1\r\n"
                      "1,\r\n"
                      "\r\n"
                      "4,1\r\n"
                      "5,\r\n"
                      "2,1\r\n")  # A repeated identical row is accepted.
    self.assertEqual(
        category_tree.read_category_tree(path), {
            "1": ("1",),
            "2": ("1", "2"),
            "3": ("1", "2", "3"),
            "4": ("1", "4"),
            "5": ("5",),
            "6": ("5", "6"),
        })

  def test_cycle_names_file_ids_and_lines(self):
    path = self.write("categoryid,parentid\n1,\n2,3\n3,4\n4,2\n5,1\n")
    with self.assertRaisesRegex(ValueError, "cycle") as cm:
      category_tree.read_category_tree(path)
    message = str(cm.exception)
    self.assertIn(path, message)
    for category, line in (("2", 3), ("3", 4), ("4", 5)):
      self.assertIn(f"'{category}' (line {line})", message)
    self.assertNotIn("'5'", message)

  def test_self_parent_is_a_cycle(self):
    path = self.write("categoryid,parentid\n7,7\n")
    with self.assertRaisesRegex(ValueError, r"cycle: '7' \(line 2\)"):
      category_tree.read_category_tree(path)

  def test_missing_parent_names_child_parent_and_line(self):
    path = self.write("categoryid,parentid\n1,\n8,99\n")
    with self.assertRaisesRegex(ValueError, "missing parent") as cm:
      category_tree.read_category_tree(path)
    message = str(cm.exception)
    self.assertIn(path, message)
    self.assertIn("'8' (line 3)", message)
    self.assertIn("'99'", message)

  def test_two_parents_is_an_error(self):
    path = self.write("categoryid,parentid\n1,\n4,\n2,1\n2,4\n")
    with self.assertRaisesRegex(ValueError, r"line 5: category '2' has parent "
                                r"'4', but line 4 gave it parent '1'"):
      category_tree.read_category_tree(path)

  def test_wrong_number_of_fields(self):
    path = self.write("categoryid,parentid\n1,\n2,1,x\n")
    with self.assertRaisesRegex(ValueError, "line 3: expected 2 fields"):
      category_tree.read_category_tree(path)

  def test_empty_file(self):
    with self.assertRaisesRegex(ValueError, "empty"):
      category_tree.read_category_tree(self.write(""))


class ResolvePathsTest(absltest.TestCase):

  def test_roots_and_chains(self):
    self.assertEqual(
        category_tree.resolve_paths({"a": None, "b": "a", "c": "b", "d": ""}),
        {"a": ("a",), "b": ("a", "b"), "c": ("a", "b", "c"), "d": ("d",)})

  def test_missing_parent(self):
    with self.assertRaisesRegex(ValueError, "'b' has parent 'zz'"):
      category_tree.resolve_paths({"a": None, "b": "zz"})

  def test_cycle(self):
    with self.assertRaisesRegex(ValueError, "'x' -> 'y' -> 'x'"):
      category_tree.resolve_paths({"x": "y", "y": "x"})

  def test_hundred_thousand_categories(self):
    # A tree of depth 6 with fan-out 10 (111,111 categories), listed leaves
    # first so that every walk has to go up to the root.
    parent = {}
    level = ["r"]
    parent["r"] = None
    for _ in range(5):
      level = [f"{p}.{i}" for p in level for i in range(10)]
      for category in level:
        parent[category] = category.rsplit(".", 1)[0]
    parent = dict(reversed(list(parent.items())))
    paths = category_tree.resolve_paths(parent)
    self.assertLen(paths, 111_111)
    self.assertEqual(paths["r.3.1.4.1.5"],
                     ("r", "r.3", "r.3.1", "r.3.1.4", "r.3.1.4.1",
                      "r.3.1.4.1.5"))

  def test_deep_chain_does_not_recurse(self):
    parent = {str(i): (str(i - 1) if i else None) for i in range(3000)}
    paths = category_tree.resolve_paths(parent)
    self.assertLen(paths["2999"], 3000)
    self.assertEqual(paths["2999"][:2], ("0", "1"))


if __name__ == "__main__":
  absltest.main()
