"""Analysis of experiment runs: intervals, importance, reports and plots."""
