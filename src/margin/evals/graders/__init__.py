"""Graders: one protocol (`Grader`: a `Sample` in, a `Grade` out), built-in kinds, and plugins
registered under the entry-point group `margin.graders`."""
