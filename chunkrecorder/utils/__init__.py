"""Small building blocks every layer of the cog may use; they import nothing of it."""
