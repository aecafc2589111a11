"""The papers' experiments as one call each (E1: ``run_rid``), with reports and plots."""
