"""`margin whatif`: replay a team's recorded traffic through margin's cost levers (exact and
semantic cache, the learned router, the planner) and report the savings at a stated quality.

A library beside evals and the planner: it never imports the web layer. `margin.cli.whatif` is
its thin command line.
"""
