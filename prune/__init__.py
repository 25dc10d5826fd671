"""edgeprune stage package."""
