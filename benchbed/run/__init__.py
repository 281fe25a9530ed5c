"""Stage 3, the run: the suite driver (in the CLI process) hands tasks to an executor;
workers build, train and evaluate each run into the store."""
