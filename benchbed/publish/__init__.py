"""Stage 4, publishing: records, leaderboards, findings with their t-tests, flags,
deviations from the papers and provenance."""
