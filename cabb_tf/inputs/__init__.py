"""The input layer: splits, α and the rows a train step reads (docs/method.md)."""
