"""The office app's own features: the user's documents, grounded answers, tools."""
