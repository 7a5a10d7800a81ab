"""m2ctr: facts shared by every package (the log format, feature families, cold-start buckets)."""
