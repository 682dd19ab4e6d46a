"""Task packages."""
