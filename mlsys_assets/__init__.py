"""mlsys: a reference production ML platform on Dagster."""
