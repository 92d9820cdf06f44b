"""Text for reading: subtitle events and their rules, where lines break, writing systems."""
