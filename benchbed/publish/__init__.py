"""Stage 4, publishing: records, leaderboards, findings, flags, significance,
deviations from the papers and provenance."""
