"""Reports of runs: comparison tables, collecting run dirs, aggregating seeds, figures."""
