"""Developer tools that are part of the repository but not of the installed package."""
