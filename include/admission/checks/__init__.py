"""The stage checks: one function per registry entry (stages), the website check (sites, crawler) and the
operator lists. They read the snapshot, never the folder, and return results for the store."""
