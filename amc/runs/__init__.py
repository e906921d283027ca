"""A search's runs: run-dir, settings and resume rules, the episode log, rewards, the methods and the final evaluation."""
