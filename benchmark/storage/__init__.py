"""Storage: result files and their integrity seals, default folders, the vision-feature cache and the
hub reachability check. Importing this package loads nothing (the leaderboard reads the seal
without torch)."""
