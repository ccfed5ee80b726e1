"""What the model side and the data side share without importing each other: argument
checks with one style of error, and the names of the shift modes. Standard library only."""
